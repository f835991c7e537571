// The task page, live: the event stream extends the log and refreshes the parts of the page
// (state, research, questions, plan) that an event changes. Chat goes over a WebSocket.
"use strict";

(function () {
  var root = document.getElementById("task");
  if (!root) return;
  var taskId = root.dataset.task;
  var lastId = parseInt(root.dataset.lastEvent || "0", 10);
  var liveKinds = (root.dataset.liveKinds || "").split(",");
  var log = document.getElementById("log");
  var dot = document.getElementById("live-dot");
  // A log is read from its newest end, on a fresh load as while it grows.
  log.scrollTop = log.scrollHeight;

  function eventItem(e) {
    var li = document.createElement("li");
    li.className = "ev ev-" + e.kind.split(".")[0];
    li.dataset.id = e.id;
    var time = document.createElement("time");
    time.dateTime = e.created_at;
    time.textContent = (e.created_at.split("T")[1] || "").slice(0, 8);
    var kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = e.kind;
    var msg = document.createElement("span");
    msg.className = "msg";
    msg.textContent = e.message;
    li.append(time, " ", kind, " ", msg);
    var detail = e.data && (e.data.content || e.data.output);
    if (detail) {
      var details = document.createElement("details");
      var summary = document.createElement("summary");
      summary.textContent = "details";
      var pre = document.createElement("pre");
      pre.textContent = detail;
      details.append(summary, pre);
      li.append(details);
    }
    return li;
  }

  // Re-read the page and swap its live parts; at most one request in flight, and one more
  // after it when events kept coming.
  var refreshing = false, again = false;
  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(window.location.pathname, { headers: { Accept: "text/html" } })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        ["live-status", "live-parts", "live-spec"].forEach(function (id) {
          var fresh = doc.getElementById(id), here = document.getElementById(id);
          if (!fresh || !here) return;
          // Keep what the reader opened and what they are typing.
          var active = document.activeElement;
          if (active && here.contains(active) && active.value) return;
          var open = Array.prototype.map.call(here.querySelectorAll("details[open]"), function (d) {
            return d.parentElement && d.parentElement.dataset.position;
          });
          here.innerHTML = fresh.innerHTML;
          here.querySelectorAll("details").forEach(function (d) {
            if (d.parentElement && open.indexOf(d.parentElement.dataset.position) >= 0) d.open = true;
          });
        });
        var state = doc.getElementById("task-state");
        if (state) root.dataset.state = state.dataset.state;
      })
      .finally(function () {
        refreshing = false;
        if (again) { again = false; refresh(); }
      });
  }

  function handle(e) {
    if (e.id <= lastId) return;
    lastId = e.id;
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.append(eventItem(e));
    if (atBottom) log.scrollTop = log.scrollHeight;
    if (liveKinds.some(function (k) { return e.kind.indexOf(k) === 0; })) refresh();
  }

  // Server-sent events read with fetch (EventSource only delivers named events to listeners
  // registered per name, and every event here is named by its kind). Resumes after lastId.
  function follow() {
    fetch("/api/tasks/" + taskId + "/events/stream?after=" + lastId, {
      headers: { Accept: "text/event-stream" },
    }).then(function (response) {
      if (!response.ok || !response.body) throw new Error("stream " + response.status);
      dot.classList.add("on");
      dot.title = "Live";
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      var ended = false;
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) return;
          buffer += decoder.decode(chunk.value, { stream: true });
          var blocks = buffer.split("\n\n");
          buffer = blocks.pop();
          blocks.forEach(function (block) {
            var kind = "message", data = "";
            block.split("\n").forEach(function (line) {
              if (line.indexOf("event: ") === 0) kind = line.slice(7);
              else if (line.indexOf("data: ") === 0) data += line.slice(6);
            });
            if (kind === "end") { ended = true; return; }
            if (data) handle(JSON.parse(data));
          });
          return pump();
        });
      }
      return pump().then(function () {
        dot.classList.remove("on");
        dot.title = ended ? "The task is at rest" : "Reconnecting";
        if (ended) refresh(); else setTimeout(follow, 1000);
      });
    }).catch(function () {
      dot.classList.remove("on");
      setTimeout(follow, 2000);
    });
  }
  follow();

  // Chat over a WebSocket.
  var form = document.getElementById("chat-form");
  var chatLog = document.getElementById("chat-log");
  var status = document.getElementById("chat-status");
  if (form && chatLog) {
    var socket = null;
    var pending = [];
    var addTurn = function (who, text, requirements) {
      var li = document.createElement("li");
      li.className = who === "user" ? "chat-user" : "chat-agent";
      var label = document.createElement("span");
      label.className = "who";
      label.textContent = who === "user" ? "You" : "Agent";
      var body = document.createElement("div");
      body.className = "prose";
      body.style.whiteSpace = "pre-wrap";
      body.textContent = text;
      li.append(label, body);
      (requirements || []).forEach(function (r) {
        var f = document.createElement("form");
        f.method = "post";
        f.action = "/tasks/" + taskId + "/requirements";
        f.className = "inline";
        var input = document.createElement("input");
        input.type = "hidden"; input.name = "text"; input.value = r;
        var button = document.createElement("button");
        button.type = "submit"; button.className = "small";
        button.textContent = "Add requirement: " + r;
        f.append(input, button);
        li.append(f);
      });
      chatLog.append(li);
      chatLog.scrollTop = chatLog.scrollHeight;
    };
    var connect = function () {
      var scheme = location.protocol === "https:" ? "wss://" : "ws://";
      socket = new WebSocket(scheme + location.host + "/tasks/" + taskId + "/chat");
      socket.onopen = function () {
        pending.splice(0).forEach(function (m) { socket.send(m); });
      };
      socket.onmessage = function (message) {
        var m = JSON.parse(message.data);
        if (m.kind === "user") { addTurn("user", m.text); status.textContent = "The agent is thinking…"; }
        else if (m.kind === "agent") { addTurn("agent", m.text, m.requirements); status.textContent = ""; }
        else if (m.kind === "error") { status.textContent = m.message; }
      };
      socket.onclose = function () { socket = null; };
    };
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = form.elements.text.value.trim();
      if (!text) return;
      var payload = JSON.stringify({ text: text });
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(payload);
      else { pending.push(payload); if (!socket) connect(); }
      form.elements.text.value = "";
    });
    form.elements.text.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
    });
  }
})();
