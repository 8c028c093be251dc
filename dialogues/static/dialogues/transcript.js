// The dialogue page's transcript: polls the staff-only fragment for new messages and sends
// the reply box without reloading the page. No dependencies.
(function () {
  "use strict";
  var POLL_MS = 2000;

  function start() {
    var module = document.getElementById("transcript");
    if (!module) return;
    var body = document.getElementById("transcript-body");
    var url = module.getAttribute("data-url");
    var form = module.querySelector("form.transcript-reply");
    var busy = false;
    var last = null; // the last fragment shown, as the server sent it

    function list() { return body.querySelector("ol.transcript"); }
    function atBottom() {
      var ol = list();
      return !ol || ol.scrollHeight - ol.scrollTop - ol.clientHeight < 40;
    }
    function toBottom() { var ol = list(); if (ol) ol.scrollTop = ol.scrollHeight; }
    function show(html) {
      if (html === last) return;
      last = html;
      var stick = atBottom();
      body.innerHTML = html;
      if (stick) toBottom();
    }
    function poll() {
      if (busy || document.hidden) return;
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (r) { return r.ok && !r.redirected ? r.text() : null; })
        .then(function (html) { if (html !== null) show(html.trim()); })
        .catch(function () {})
        .then(function () { busy = false; });
    }

    toBottom();
    window.setInterval(poll, POLL_MS);

    if (!form) return;
    var text = form.querySelector("textarea");
    var error = form.querySelector(".transcript-error");
    var button = form.querySelector("button[type=submit]");
    text.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        if (typeof form.requestSubmit === "function") form.requestSubmit(); else form.submit();
      }
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!text.value.trim()) { error.textContent = text.validationMessage || ""; return; }
      button.disabled = true;
      error.textContent = "";
      fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
        headers: { "X-Requested-With": "fetch" }
      })
        .then(function (r) {
          return r.text().then(function (payload) {
            if (!r.ok) throw new Error(payload || r.statusText);
            text.value = "";
            show(payload.trim());
            toBottom();
          });
        })
        .catch(function (e) { error.textContent = e.message; })
        .then(function () { button.disabled = false; text.focus(); });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
