// Canned replies in the transcript's reply box: type "/" and a few letters of a shortcut, pick
// one with the arrows and Enter (or Tab, or a click); Esc closes the list. The replies come from
// the page (<script id="canned-replies" type="application/json">), drawn as text only.
(function () {
  "use strict";
  const source = document.getElementById("canned-replies");
  const box = document.getElementById("transcript-text");
  if (!source || !box) return;
  const replies = JSON.parse(source.textContent || "[]");
  if (!replies.length) return;
  const list = document.createElement("ul");
  list.id = "canned-list";
  list.className = "canned-list";
  list.setAttribute("role", "listbox");
  list.hidden = true;
  box.insertAdjacentElement("afterend", list);
  box.setAttribute("aria-autocomplete", "list");
  box.setAttribute("aria-controls", list.id);
  let shown = [];
  let active = 0;
  let start = -1;

  function query() {
    const before = box.value.slice(0, box.selectionStart);
    const found = before.match(/(^|\s)\/([\p{L}\p{N}_-]*)$/u);
    if (!found) return null;
    start = before.length - found[2].length - 1;
    return found[2].toLowerCase();
  }

  function close() {
    list.hidden = true;
    shown = [];
    box.removeAttribute("aria-activedescendant");
  }

  function draw() {
    list.textContent = "";
    shown.forEach(function (reply, index) {
      const item = document.createElement("li");
      item.id = "canned-" + index;
      item.setAttribute("role", "option");
      item.setAttribute("aria-selected", index === active ? "true" : "false");
      const name = document.createElement("strong");
      name.textContent = "/" + reply.shortcut;
      const text = document.createElement("span");
      text.textContent = " " + reply.text.slice(0, 120);
      item.appendChild(name);
      item.appendChild(text);
      item.addEventListener("mousedown", function (event) { event.preventDefault(); insert(index); });
      list.appendChild(item);
    });
    list.hidden = shown.length === 0;
    if (shown.length) box.setAttribute("aria-activedescendant", "canned-" + active);
  }

  function insert(index) {
    const reply = shown[index];
    if (!reply || start < 0) return;
    const end = box.selectionStart;
    box.value = box.value.slice(0, start) + reply.text + box.value.slice(end);
    const caret = start + reply.text.length;
    box.setSelectionRange(caret, caret);
    close();
    box.dispatchEvent(new Event("input", { bubbles: true }));
    box.focus();
  }

  box.addEventListener("input", function () {
    const typed = query();
    if (typed === null) { close(); return; }
    const prefix = replies.filter(function (r) { return r.shortcut.toLowerCase().startsWith(typed); });
    const inside = replies.filter(function (r) {
      return !r.shortcut.toLowerCase().startsWith(typed) && r.shortcut.toLowerCase().includes(typed);
    });
    shown = prefix.concat(inside).slice(0, 8);
    active = 0;
    draw();
  });
  // Capture phase, and no other handler after it: while the list is open, Enter picks a reply
  // rather than sending the message (transcript.js's Enter).
  box.addEventListener("keydown", function (event) {
    if (list.hidden) return;
    const handled = ["ArrowDown", "ArrowUp", "Enter", "Tab", "Escape"].indexOf(event.key) >= 0;
    if (!handled) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      active = (active + (event.key === "ArrowDown" ? 1 : shown.length - 1)) % shown.length;
      draw();
    } else if (event.key === "Enter" || event.key === "Tab") {
      insert(active);
    } else {
      close();
    }
  }, true);
  box.addEventListener("blur", function () { window.setTimeout(close, 150); });
})();
