// The review page: line and range comments, expanding unchanged lines, viewed files, large
// files on demand, colours for the files printed uncoloured, and keyboard navigation.
"use strict";

(function () {
  var root = document.getElementById("review");
  if (!root) return;
  var taskId = root.dataset.task;
  var split = root.dataset.layout === "split";
  var template = document.getElementById("comment-form-template");
  var anchor = null; // the first line of a shift-click range: {path, side, line, row}

  function columns() { return split ? 4 : 3; }

  function clearSelection() {
    root.querySelectorAll("tr.selected").forEach(function (tr) { tr.classList.remove("selected"); });
  }

  function openForm(row, path, side, first, last) {
    root.querySelectorAll("tr.comment-row").forEach(function (tr) { tr.remove(); });
    var form = template.content.firstElementChild.cloneNode(true);
    form.elements.path.value = path;
    form.elements.side.value = side;
    form.elements.line.value = first;
    form.elements.end_line.value = last > first ? last : "";
    form.querySelector(".where").textContent =
      "Comment on " + path + (last > first ? " lines " + first + "–" + last : " line " + first) +
      (side === "old" ? " (old version)" : "");
    var code = selectedText(row.closest("table"), side, first, last);
    form.querySelectorAll("input[name=kind]").forEach(function (radio) {
      radio.addEventListener("change", function () {
        var suggestion = form.elements.kind.value === "suggestion";
        form.querySelector(".suggestion-field").hidden = !suggestion;
        if (suggestion && !form.elements.suggestion.value) form.elements.suggestion.value = code;
      });
    });
    form.querySelector(".cancel-comment").addEventListener("click", function () {
      tr.remove();
      clearSelection();
    });
    var tr = document.createElement("tr");
    tr.className = "comment-row thread-row";
    var td = document.createElement("td");
    td.colSpan = columns();
    td.append(form);
    tr.append(td);
    row.after(tr);
    form.elements.body.focus();
  }

  function selectedText(table, side, first, last) {
    var lines = [];
    table.querySelectorAll(".ln[data-side=" + side + "]").forEach(function (button) {
      var n = parseInt(button.dataset.line, 10);
      if (n >= first && n <= last) {
        var cell = split ? button.closest("td").nextElementSibling : button.closest("tr").querySelector("td.code");
        var src = cell && cell.querySelector(".src");
        lines.push(src ? src.textContent : "");
      }
    });
    return lines.join("\n");
  }

  root.addEventListener("click", function (event) {
    var button = event.target.closest(".ln");
    if (button) {
      var table = button.closest("table");
      var path = table.dataset.path, side = button.dataset.side;
      var line = parseInt(button.dataset.line, 10);
      var row = button.closest("tr");
      clearSelection();
      if (event.shiftKey && anchor && anchor.path === path && anchor.side === side) {
        var first = Math.min(anchor.line, line), last = Math.max(anchor.line, line);
        var lastRow = row;
        table.querySelectorAll(".ln[data-side=" + side + "]").forEach(function (b) {
          var n = parseInt(b.dataset.line, 10);
          if (n >= first && n <= last) {
            b.closest("tr").classList.add("selected");
            if (n === last) lastRow = b.closest("tr");
          }
        });
        openForm(lastRow, path, side, first, last);
      } else {
        anchor = { path: path, side: side, line: line };
        row.classList.add("selected");
        openForm(row, path, side, line, line);
      }
      return;
    }
    var expand = event.target.closest(".expand");
    if (expand) { expandGap(expand); return; }
    var fold = event.target.closest(".fold");
    if (fold) { setCollapsed(fold.closest(".file"), !fold.closest(".file").classList.contains("collapsed")); return; }
    var load = event.target.closest(".load-file");
    if (load) loadFile(load);
  });

  // Unchanged lines between hunks come from the server, highlighted like the diff.
  function expandGap(button) {
    var table = button.closest("table");
    var start = parseInt(button.dataset.start, 10);
    var offset = parseInt(button.dataset.offset, 10);
    var params = new URLSearchParams({ path: table.dataset.path, rev: root.dataset.rev, start: String(start) });
    if (button.dataset.end) params.set("end", button.dataset.end);
    button.disabled = true;
    fetch("/tasks/" + taskId + "/review/lines?" + params, { headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.json(); })
      .then(function (result) {
        var gapRow = button.closest("tr");
        var fragment = document.createDocumentFragment();
        result.lines.forEach(function (html, i) {
          var newNo = start + i, oldNo = newNo + offset;
          var tr = document.createElement("tr");
          tr.className = split ? "l-context r-context" : "context";
          var ln = '<button type="button" class="ln" data-side="new" data-line="' + newNo + '" aria-label="Comment on new line ' + newNo + '">' + newNo + "</button>";
          tr.innerHTML = split
            ? '<td class="num">' + oldNo + '</td><td class="code"><span class="src">' + html + '</span></td><td class="num">' + ln + '</td><td class="code"><span class="src">' + html + "</span></td>"
            : '<td class="num">' + oldNo + '</td><td class="num">' + ln + '</td><td class="code"><span class="sign" aria-hidden="true"> </span><span class="src">' + html + "</span></td>";
          fragment.append(tr);
        });
        // An empty answer (the file ended where the hunk did) just removes the row.
        gapRow.replaceWith(fragment);
      })
      .catch(function () { button.disabled = false; button.textContent = "Could not load the lines; try again"; });
  }

  // A file's rows fetched on demand (a whole file, or the rest of one the page cut short:
  // those rows go under the ones shown); the same promise for every caller while it loads.
  function loadFile(button) {
    if (button.loading) return button.loading;
    var file = button.closest(".file");
    var params = new URLSearchParams(root.dataset.highlightQuery);  // the page's own view
    params.set("path", button.dataset.path);
    if (button.dataset.row) params.set("row", button.dataset.row);
    button.disabled = true;
    button.textContent = "Loading…";
    if (!button.dataset.auto) file.classList.remove("collapsed");
    button.loading = fetch("/tasks/" + taskId + "/review/file?" + params, { headers: { Accept: "text/html" } })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.text(); })
      .then(function (html) {
        var shown = button.dataset.row && file.querySelector("table.diff > tbody");
        if (!shown) {
          button.closest(".note").outerHTML = html;
        } else {
          var holder = document.createElement("template");
          holder.innerHTML = html;
          var rest = holder.content.querySelector("table.diff > tbody");
          if (rest) shown.append.apply(shown, Array.prototype.slice.call(rest.children));
          button.closest(".note").remove();
        }
        // Threads on rows the page had not printed were listed under the diff: now they
        // are at their line, once.
        file.querySelectorAll("table.diff article.thread[id]").forEach(function (thread) {
          var listed = document.querySelector("#threads > #" + thread.id);
          if (listed) listed.remove();
        });
      })
      .catch(function () {
        button.loading = null;
        button.disabled = false;
        button.textContent = "Could not load; try again";
      });
    return button.loading;
  }
  function ensureLoaded(file) {
    var lazy = file && file.querySelector(".load-file[data-auto]");
    return lazy ? loadFile(lazy) : Promise.resolve();
  }
  // Files past the page's first screens load as the reader nears them.
  if ("IntersectionObserver" in window) {
    var nearing = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (!entry.isIntersecting) return;
        nearing.unobserve(entry.target);
        loadFile(entry.target);
      });
    }, { rootMargin: "800px 0px" });
    root.querySelectorAll(".load-file[data-auto]").forEach(function (b) { nearing.observe(b); });
  }

  // Files past the page's highlighting budget came escaped but uncoloured: ask for their
  // colours, one batch after another, and swap each line's HTML in place (rows, buttons,
  // comments and expanded lines stay as they are).
  function highlightPending() {
    var batches = (root.dataset.highlight || "").split(";").filter(Boolean);
    function next() {
      var batch = batches.shift();
      if (!batch) return;
      var params = new URLSearchParams(root.dataset.highlightQuery);
      batch.split(",").forEach(function (index) { params.append("file", index); });
      fetch("/tasks/" + taskId + "/review/highlight?" + params, { headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.json(); })
        .then(function (result) {
          result.files.forEach(function (file) {
            var section = root.querySelector('.file[data-index="' + file.index + '"]');
            if (!section || section.dataset.path !== file.path) return;
            section.querySelectorAll("table.diff").forEach(function (table) { recolour(table, file.lines); });
            section.classList.remove("pending");
          });
          next();
        })
        .catch(function () { /* the lines stay readable, uncoloured */ });
    }
    next();
  }
  function recolour(table, lines) {
    table.querySelectorAll("td.code > .src").forEach(function (src) {
      var cell = src.parentNode;
      var ln = split
        ? cell.previousElementSibling && cell.previousElementSibling.querySelector(".ln")
        : cell.parentNode.querySelector("td.num .ln");
      if (!ln) return;
      var html = lines[ln.dataset.side + ":" + ln.dataset.line];
      if (html !== undefined) src.innerHTML = html;
    });
  }
  highlightPending();

  // Viewed files: remembered per task and per exact revision, in this browser.
  function viewedKey(file) { return "errands-viewed:" + root.dataset.viewedKey + ":" + file.dataset.path; }
  function setCollapsed(file, collapsed) {
    file.classList.toggle("collapsed", collapsed);
    var fold = file.querySelector(".fold");
    if (fold) fold.setAttribute("aria-expanded", String(!collapsed));
  }
  // A subtask's newest version: the marks live on the server, per reviewer (every device sees
  // them; one resets when the subtask's change to that file changes). Elsewhere (the whole
  // branch, an old version) they stay in this browser.
  var onServer = root.dataset.serverViewed === "1";
  function saveViewed(file, box) {
    var csrf = document.querySelector('input[name="csrf_token"]');
    var headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (csrf) headers["X-CSRF-Token"] = csrf.value;
    fetch("/api/tasks/" + taskId + "/viewed", {
      method: "POST",
      headers: headers,
      body: JSON.stringify({ subtask: Number(root.dataset.subtask), path: file.dataset.path, viewed: box.checked }),
    })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); file.dataset.viewedSaved = String(box.checked); })
      .catch(function () { box.checked = !box.checked; setCollapsed(file, box.checked); });
  }
  root.querySelectorAll(".file").forEach(function (file) {
    var box = file.querySelector(".viewed-box");
    if (!box) return;
    if (!onServer) box.checked = localStorage.getItem(viewedKey(file)) === "1";
    if (box.checked) setCollapsed(file, true);
    box.addEventListener("change", function () {
      if (onServer) saveViewed(file, box);
      else if (box.checked) localStorage.setItem(viewedKey(file), "1");
      else localStorage.removeItem(viewedKey(file));
      setCollapsed(file, box.checked);
    });
  });

  // Keyboard: j/k files, n/p subtasks, c comment, v viewed.
  var files = Array.prototype.slice.call(root.querySelectorAll(".file"));
  var current = -1;
  function focusFile(index) {
    if (!files.length) return;
    current = Math.max(0, Math.min(files.length - 1, index));
    files.forEach(function (f, i) { f.classList.toggle("focused", i === current); });
    files[current].scrollIntoView({ block: "start" });
    ensureLoaded(files[current]);
    var head = files[current].querySelector(".fold");
    if (head) head.focus({ preventScroll: true });
  }
  function stackStep(delta) {
    var items = Array.prototype.slice.call(root.querySelectorAll("a.stack-item[data-stack]"));
    var here = items.findIndex(function (a) { return a.classList.contains("current"); });
    var next = items[here + delta];
    if (next) window.location.href = next.href;
  }
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target.closest && target.closest("input, textarea, select, [contenteditable]")) {
      if (event.key === "Escape") target.blur();
      return;
    }
    var file = files[current] || files[0];
    switch (event.key) {
      case "j": focusFile(current + 1); break;
      case "k": focusFile(current - 1); break;
      case "n": stackStep(1); break;
      case "p": stackStep(-1); break;
      case "c": {
        if (!file) return;
        setCollapsed(file, false);
        if (file.querySelector(".load-file[data-auto]")) {
          // Not loaded yet: load it, then comment as asked.
          ensureLoaded(file).then(function () {
            document.dispatchEvent(new KeyboardEvent("keydown", { key: "c" }));
          });
          break;
        }
        // The first changed line, else any line (a selector list would take document order).
        var line = ["tr.added .ln", "tr.r-added .ln[data-side=new]", "tr.removed .ln", "tr.l-removed .ln", ".ln"]
          .map(function (selector) { return file.querySelector(selector); })
          .filter(Boolean)[0];
        if (line) line.click();
        break;
      }
      case "v": {
        var box = file && file.querySelector(".viewed-box");
        if (box) { box.checked = !box.checked; box.dispatchEvent(new Event("change")); }
        break;
      }
      default: return;
    }
    event.preventDefault();
  });
})();
