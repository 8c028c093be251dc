/* The web chat widget. Embed with
 *   <script src="https://<our host>/channels/webchat/webchat.js" data-channel="<id>" async></script>
 * Plain JavaScript, no build step, no requests anywhere but the script's own host and its
 * stream. Every message is rendered with textContent, never as HTML. Text in English or
 * Russian, following <html lang>. */
(function () {
  "use strict";

  var script = document.currentScript || document.querySelector("script[data-channel][src*='webchat.js']");
  if (!script || !script.getAttribute("data-channel")) { return; }
  var channel = script.getAttribute("data-channel");
  var apiOrigin = new URL(script.src, document.baseURI).origin;
  var path = "/channels/webchat/" + encodeURIComponent(channel);
  var api = apiOrigin + path;
  var givenToken = script.getAttribute("data-visitor") || "";
  var storageKey = "webchat:" + apiOrigin + ":" + channel;
  var POLL_MS = 3000;
  var TEXT_MAX = 4000;

  var TEXTS = {
    en: {
      open: "Open chat", close: "Close chat", title: "Chat with us", label: "Message",
      placeholder: "Type a message…", send: "Send", you: "You", assistant: "Assistant",
      employee: "Operator", typing: "Typing…", failed: "Could not send. Try again.",
      throttled: "Too many messages. Wait a moment.", refused: "This chat is not available on this site.",
      empty: "Ask us anything.", unread: "New message"
    },
    ru: {
      open: "Открыть чат", close: "Закрыть чат", title: "Напишите нам", label: "Сообщение",
      placeholder: "Введите сообщение…", send: "Отправить", you: "Вы", assistant: "Ассистент",
      employee: "Оператор", typing: "Печатает…", failed: "Не удалось отправить. Попробуйте ещё раз.",
      throttled: "Слишком много сообщений. Подождите немного.", refused: "Чат недоступен на этом сайте.",
      empty: "Задайте вопрос.", unread: "Новое сообщение"
    }
  };
  var lang = (document.documentElement.getAttribute("lang") || navigator.language || "en").toLowerCase();
  var t = TEXTS[lang.slice(0, 2) === "ru" ? "ru" : "en"];

  var CSS = [
    ":host { all: initial; }",
    "* { box-sizing: border-box; font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; }",
    ".launcher { position: fixed; right: 20px; bottom: 20px; width: 56px; height: 56px; border-radius: 50%; display: flex; align-items: center; justify-content: center;",
    "  border: none; background: #1f5fbf; color: #fff; font-size: 26px; cursor: pointer; z-index: 2147483000;",
    "  box-shadow: 0 2px 10px rgba(0,0,0,.25); }",
    ".launcher:focus-visible, button:focus-visible, textarea:focus-visible, .log:focus-visible { outline: 3px solid #f2a900; outline-offset: 2px; }",
    ".launcher.unread::after { content: ''; position: absolute; top: 4px; right: 4px; width: 12px; height: 12px;",
    "  border-radius: 50%; background: #d93025; border: 2px solid #fff; }",
    ".window { position: fixed; right: 20px; bottom: 88px; width: 360px; max-width: calc(100vw - 40px);",
    "  height: 480px; max-height: calc(100vh - 110px); display: flex; flex-direction: column; background: #fff;",
    "  color: #1a1a1a; border-radius: 12px; box-shadow: 0 4px 24px rgba(0,0,0,.25); z-index: 2147483000; overflow: hidden; }",
    ".window[hidden] { display: none; }",
    "header { display: flex; align-items: center; justify-content: space-between; padding: 10px 14px; background: #1f5fbf; color: #fff; }",
    "h2 { margin: 0; font-size: 16px; font-weight: 600; }",
    ".close { background: transparent; border: none; color: #fff; font-size: 22px; cursor: pointer; line-height: 1; padding: 4px 8px; }",
    ".log { flex: 1; overflow-y: auto; padding: 12px; display: flex; flex-direction: column; gap: 8px; margin: 0; list-style: none; }",
    ".msg { max-width: 85%; padding: 8px 11px; border-radius: 12px; white-space: pre-wrap; overflow-wrap: anywhere; font-size: 14px; line-height: 1.4; }",
    ".msg.user { align-self: flex-end; background: #1f5fbf; color: #fff; }",
    ".msg.assistant { align-self: flex-start; background: #eef1f5; }",
    ".msg.employee { align-self: flex-start; background: #fff4d6; }",
    ".msg.failed { opacity: .6; }",
    ".who { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }",
    ".msg.employee .who { position: static; width: auto; height: auto; clip: auto; display: block; font-size: 12px; color: #6b5200; }",
    ".empty { color: #666; font-size: 14px; text-align: center; margin-top: 20px; }",
    ".status { min-height: 1.4em; padding: 0 14px; font-size: 12px; color: #555; }",
    "form { display: flex; gap: 8px; padding: 10px; border-top: 1px solid #e3e3e3; }",
    "textarea { flex: 1; resize: none; height: 42px; padding: 8px; border: 1px solid #bbb; border-radius: 8px; font-size: 14px; color: #1a1a1a; background: #fff; }",
    ".send { border: none; border-radius: 8px; padding: 0 14px; background: #1f5fbf; color: #fff; font-size: 14px; cursor: pointer; }",
    ".sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }"
  ].join("\n");

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function uuid4() {
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function storedToken() {
    if (givenToken) { return givenToken; }
    try { return localStorage.getItem(storageKey) || ""; } catch (e) { return ""; }
  }

  function storeToken(token) {
    if (givenToken) { return; }
    try { localStorage.setItem(storageKey, token); } catch (e) { /* private mode: this page only */ }
  }

  // --- The elements, in a shadow root: the site's styles do not reach them. ---
  var host = el("div", { "data-webchat": channel });
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  var style = el("style");
  style.textContent = CSS;
  var windowId = "webchat-window";
  var launcher = el("button", {
    "class": "launcher", type: "button", "aria-label": t.open, "aria-haspopup": "dialog",
    "aria-expanded": "false", "aria-controls": windowId
  });
  // A speech bubble drawn here (no icon font, no image request); hidden from screen readers,
  // which read the button's label.
  var svgNs = "http://www.w3.org/2000/svg";
  var icon = document.createElementNS(svgNs, "svg");
  icon.setAttribute("viewBox", "0 0 24 24");
  icon.setAttribute("width", "28");
  icon.setAttribute("height", "28");
  icon.setAttribute("aria-hidden", "true");
  icon.setAttribute("focusable", "false");
  var bubble = document.createElementNS(svgNs, "path");
  bubble.setAttribute("d", "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z");
  bubble.setAttribute("fill", "currentColor");
  icon.appendChild(bubble);
  launcher.appendChild(icon);
  var win = el("div", { "class": "window", id: windowId, role: "dialog", "aria-labelledby": "webchat-title", hidden: "" });
  var header = el("header");
  var title = el("h2", { id: "webchat-title" }, t.title);
  var closeButton = el("button", { "class": "close", type: "button", "aria-label": t.close }, "\u00D7");
  header.appendChild(title);
  header.appendChild(closeButton);
  var log = el("ol", { "class": "log", role: "log", "aria-live": "polite", "aria-relevant": "additions", tabindex: "0", "aria-label": t.title });
  var empty = el("p", { "class": "empty" }, t.empty);
  var status = el("div", { "class": "status", role: "status", "aria-live": "polite" });
  var form = el("form", { novalidate: "" });
  var label = el("label", { "class": "sr", "for": "webchat-input" }, t.label);
  var input = el("textarea", { id: "webchat-input", maxlength: String(TEXT_MAX), placeholder: t.placeholder, rows: "1" });
  var sendButton = el("button", { "class": "send", type: "submit" }, t.send);
  form.appendChild(label);
  form.appendChild(input);
  form.appendChild(sendButton);
  win.appendChild(header);
  win.appendChild(log);
  win.appendChild(empty);
  win.appendChild(status);
  win.appendChild(form);
  root.appendChild(style);
  root.appendChild(launcher);
  root.appendChild(win);

  // --- Messages ---
  var shown = {};  // message id -> its element

  function show(message, live) {
    if (!message || !message.id || typeof message.text !== "string") { return null; }
    if (shown[message.id]) { return shown[message.id]; }
    var role = message.role === "user" || message.role === "employee" ? message.role : "assistant";
    var item = el("li", { "class": "msg " + role, "data-id": message.id });
    item.appendChild(el("span", { "class": "who" }, t[role === "user" ? "you" : role] + ": "));
    item.appendChild(document.createTextNode(message.text));  // text, never HTML
    log.appendChild(item);
    shown[message.id] = item;
    empty.hidden = true;
    log.scrollTop = log.scrollHeight;
    if (live && win.hidden && role !== "user") { launcher.classList.add("unread"); launcher.setAttribute("aria-label", t.open + " (" + t.unread + ")"); }
    return item;
  }

  function say(text) { status.textContent = text || ""; }

  // --- The server ---
  var token = "";
  var streamBase = "";
  var started = null;
  var pollTimer = null;
  var source = null;

  function call(method, url, body) {
    var headers = { "X-Webchat-Visitor": token };
    var init = { method: method, headers: headers, mode: "cors", credentials: "omit", cache: "no-store" };
    if (body !== undefined) { headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    return fetch(url, init);
  }

  function session() {
    token = storedToken();
    return call("POST", api + "/session", {}).then(function (response) {
      if (!response.ok) { throw response; }
      return response.json();
    }).then(function (data) {
      token = data.visitor;
      storeToken(token);
      streamBase = data.stream_url || "";
      if (data.title) { title.textContent = data.title; log.setAttribute("aria-label", data.title); }
    });
  }

  function history() {
    return call("GET", api + "/messages").then(function (response) {
      if (!response.ok) { throw response; }
      return response.json();
    }).then(function (data) { (data.messages || []).forEach(function (m) { show(m, false); }); });
  }

  function poll() {
    if (pollTimer) { return; }
    pollTimer = setInterval(function () { history().catch(function () { /* next time */ }); }, POLL_MS);
  }

  function stream() {
    if (!streamBase || typeof EventSource === "undefined") { poll(); return; }
    var failures = 0;
    source = new EventSource(streamBase + path + "/stream?visitor=" + encodeURIComponent(token));
    source.onopen = function () {
      failures = 0;
      // What came while the stream was (re)connecting.
      history().catch(function () { /* the stream carries on */ });
    };
    source.onmessage = function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      if (data.type === "typing") { say(data.state === "on" ? t.typing : ""); return; }
      if (data.type === "message") { say(""); show(data, true); }
    };
    source.onerror = function () {
      failures += 1;
      if (source.readyState === EventSource.CLOSED || failures >= 3) {
        source.close();
        source = null;
        poll();
      }
    };
  }

  function start() {
    if (!started) {
      started = session().then(history).then(stream).catch(function (response) {
        started = null;
        say(response && response.status === 403 ? t.refused : (response && response.status === 429 ? t.throttled : t.failed));
        throw response;
      });
    }
    return started;
  }

  function post(message, attempt) {
    return call("POST", api + "/messages", { text: message.text, client_id: message.clientId }).then(function (response) {
      if (response.status === 429) { throw { final: true, text: t.throttled }; }
      if (response.status >= 500 && attempt < 3) {
        return new Promise(function (done) { setTimeout(done, 1000 * attempt); }).then(function () { return post(message, attempt + 1); });
      }
      if (!response.ok) { throw { final: true, text: response.status === 403 ? t.refused : t.failed }; }
      return response;
    }, function (error) {
      // The network: the same client_id again, so the server stores it once.
      if (attempt < 3) {
        return new Promise(function (done) { setTimeout(done, 1000 * attempt); }).then(function () { return post(message, attempt + 1); });
      }
      throw error;
    });
  }

  function send(text) {
    var clientId = uuid4();
    var item = show({ id: "web-" + clientId, role: "user", text: text });
    say("");
    start().then(function () {
      return post({ text: text, clientId: clientId }, 1);
    }).catch(function (error) {
      if (item) { item.classList.add("failed"); }
      say(error && error.text ? error.text : t.failed);
    });
  }

  // --- Opening, closing, the keyboard ---
  function open() {
    win.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    launcher.setAttribute("aria-label", t.close);
    launcher.classList.remove("unread");
    input.focus();
    log.scrollTop = log.scrollHeight;
    start().catch(function () { /* said in the status line */ });
  }

  function close() {
    win.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-label", t.open);
    launcher.focus();
  }

  launcher.addEventListener("click", function () { if (win.hidden) { open(); } else { close(); } });
  closeButton.addEventListener("click", close);
  win.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { event.preventDefault(); close(); }
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit", { cancelable: true })); }
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) { return; }
    input.value = "";
    send(text.slice(0, TEXT_MAX));
  });

  function mount() {
    document.body.appendChild(host);
    // A returning visitor's conversation is picked up at once (replies that came while away).
    if (storedToken()) { start().catch(function () { /* said in the status line */ }); }
    if (script.getAttribute("data-open") === "true") { open(); }
  }

  if (document.body) { mount(); } else { document.addEventListener("DOMContentLoaded", mount); }
})();
