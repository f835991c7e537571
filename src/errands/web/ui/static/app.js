// Errands: small behaviours every page shares. No framework, no build step.
"use strict";

(function () {
  // Dark mode: an explicit choice is remembered; otherwise the system's preference rules.
  var toggle = document.getElementById("theme-toggle");
  if (toggle) {
    toggle.addEventListener("click", function () {
      var root = document.documentElement;
      var dark = root.dataset.theme
        ? root.dataset.theme === "dark"
        : window.matchMedia("(prefers-color-scheme: dark)").matches;
      root.dataset.theme = dark ? "light" : "dark";
      localStorage.setItem("errands-theme", root.dataset.theme);
    });
  }

  // Forms that destroy something ask first.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  // The new-task form's readiness hint: the server judges the spec (one set of rules).
  var newTask = document.getElementById("new-task");
  var hint = document.getElementById("readiness");
  if (newTask && hint) {
    var timer = null;
    var check = function () {
      var data = new URLSearchParams();
      data.set("title", newTask.elements.title.value);
      data.set("body", newTask.elements.body.value);
      fetch("/tasks/new/readiness", { method: "POST", body: data })
        .then(function (r) { return r.json(); })
        .then(function (result) {
          hint.textContent = "";
          if (result.missing.length) {
            var strong = document.createElement("strong");
            strong.textContent = "Not ready yet — missing: ";
            hint.append(strong, result.missing.join(", "));
            hint.classList.remove("ready");
          } else {
            hint.textContent = "Reads like a good spec.";
            hint.classList.add("ready");
          }
        })
        .catch(function () { /* the hint is a nicety; the form works without it */ });
    };
    newTask.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(check, 350);
    });
    check();
  }
})();
