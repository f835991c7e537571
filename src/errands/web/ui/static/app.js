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

  // A choice that submits its form as soon as it changes (the board's project filter).
  document.addEventListener("change", function (event) {
    var field = event.target;
    if (field.form && field.dataset && "autosubmit" in field.dataset) field.form.submit();
  });

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

  // Notifications while the app is open: new ones are polled for, shown on the page and,
  // with the browser's permission, as system notifications. Only those that arrive after
  // the tab opened (the newest id seen is kept per tab).
  var notices = document.getElementById("notices");
  if (notices) {
    var cursor = null;
    var allow = document.getElementById("browser-permission");
    if (allow && "Notification" in window && Notification.permission === "default") {
      allow.hidden = false;
      allow.addEventListener("click", function () {
        Notification.requestPermission().then(function () { allow.hidden = true; });
      });
    }
    var show = function (n) {
      // The same page on whichever address this tab reached Errands at.
      var target = new URL(n.url, window.location.href);
      var here = target.pathname + target.search + target.hash;
      var item = document.createElement("a");
      item.className = "notice";
      item.href = here;
      item.dataset.id = n.id;
      var title = document.createElement("strong");
      title.textContent = n.title;
      item.appendChild(title);
      notices.appendChild(item);
      setTimeout(function () { item.remove(); }, 30000);
      if ("Notification" in window && Notification.permission === "granted") {
        var system = new Notification(n.title, { tag: "errands-" + n.id });
        system.onclick = function () { window.focus(); window.location.href = here; };
      }
    };
    var poll = function () {
      fetch("/api/notifications?after=" + (cursor === null ? 0 : cursor), {
        headers: { Accept: "application/json" },
      })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (feed) {
          if (!feed) return;
          if (cursor !== null) feed.items.forEach(show);
          cursor = feed.latest;
        })
        .catch(function () {});
    };
    poll();
    setInterval(poll, parseInt(notices.dataset.poll, 10) || 10000);
  }
})();
