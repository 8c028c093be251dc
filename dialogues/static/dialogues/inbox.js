// The operators' inbox: polls the inbox's JSON and redraws the list (text only: every value
// goes in with textContent). Opt-in notifications with a short sound when a conversation
// starts needing a human.
(function () {
  "use strict";
  const root = document.getElementById("inbox");
  if (!root) return;
  const url = root.dataset.url;
  const dialogueUrl = root.dataset.dialogueUrl;
  const pollMs = parseInt(root.dataset.pollMs, 10) || 2000;
  const reasons = JSON.parse(root.dataset.reasons || "{}");
  let which = root.dataset.which || "all";
  let known = null; // ids seen in the last answer (null until the first)
  let timer = null;
  const notifyBox = document.getElementById("inbox-notify");
  const status = document.getElementById("inbox-status");

  notifyBox.checked = localStorage.getItem("inbox-notify") === "1" && window.Notification && Notification.permission === "granted";
  notifyBox.addEventListener("change", function () {
    if (notifyBox.checked && window.Notification && Notification.permission !== "granted") {
      Notification.requestPermission().then(function (answer) {
        notifyBox.checked = answer === "granted";
        localStorage.setItem("inbox-notify", notifyBox.checked ? "1" : "0");
      });
      return;
    }
    localStorage.setItem("inbox-notify", notifyBox.checked ? "1" : "0");
  });

  function beep() {
    try {
      const context = new (window.AudioContext || window.webkitAudioContext)();
      const tone = context.createOscillator();
      const gain = context.createGain();
      tone.frequency.value = 880;
      gain.gain.value = 0.08;
      tone.connect(gain).connect(context.destination);
      tone.start();
      tone.stop(context.currentTime + 0.18);
    } catch (error) { /* no sound: the notification still shows */ }
  }

  function notify(row) {
    if (!notifyBox.checked || !window.Notification || Notification.permission !== "granted") return;
    const body = (row.bot_name ? row.bot_name + " · " : "") + (row.preview || row.chat_id);
    const note = new Notification(root.dataset.textNotifyTitle, { body: body, tag: "inbox-" + row.dialogue_id });
    note.onclick = function () { window.focus(); window.location = dialogueUrl.replace("DIALOGUE_ID", row.dialogue_id); };
    beep();
  }

  function waited(seconds) {
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
    return Math.floor(seconds / 86400) + " d";
  }

  function cell(tr, parts) {
    const td = document.createElement("td");
    parts.forEach(function (part) { if (part) td.appendChild(part); });
    tr.appendChild(td);
    return td;
  }

  function span(text, className) {
    const element = document.createElement("span");
    element.textContent = text;
    if (className) element.className = className;
    return element;
  }

  function draw(data) {
    ["mine", "unassigned", "all"].forEach(function (name) {
      const counter = root.querySelector('[data-count="' + name + '"]');
      if (counter) counter.textContent = String(data.counts[name]);
    });
    root.querySelectorAll(".inbox-tabs a").forEach(function (tab) {
      tab.setAttribute("aria-selected", tab.dataset.filter === which ? "true" : "false");
    });
    const body = document.getElementById("inbox-rows");
    body.textContent = "";
    const shown = data.rows.filter(function (row) {
      if (which === "mine") return data.me !== null && row.assignee_id === data.me;
      if (which === "unassigned") return row.assignee_id === null;
      return true;
    });
    shown.forEach(function (row) {
      const tr = document.createElement("tr");
      tr.dataset.dialogueId = row.dialogue_id;
      if (row.unread > 0) tr.className = "inbox-is-unread";
      const link = document.createElement("a");
      link.href = dialogueUrl.replace("DIALOGUE_ID", row.dialogue_id) + "#transcript";
      link.textContent = row.chat_id;
      const unread = row.unread > 0 ? span(row.unread >= 100 ? "99+" : String(row.unread), "inbox-unread") : null;
      if (unread) unread.setAttribute("aria-label", row.unread + " unread");
      cell(tr, [link, unread, span([row.bot_name, row.channel_name].filter(Boolean).join(" · "), "inbox-quiet")]);
      const why = row.reasons.map(function (code) { return span(reasons[code] || code, "inbox-reason"); });
      if (row.handoff_reason) why.push(span(row.handoff_reason, "inbox-quiet"));
      cell(tr, why);
      cell(tr, [span(row.preview), row.preview_role ? span(row.preview_role.toLowerCase(), "inbox-quiet") : null]);
      const pause = row.gives_back_at
        ? span(root.dataset.textGivesBack + " " + waited(Math.max(0, Math.round((Date.parse(row.gives_back_at) - Date.now()) / 1000))), "inbox-quiet")
        : (row.paused ? span(root.dataset.textUntilGivenBack, "inbox-quiet") : null);
      cell(tr, [span(waited(row.waiting_s)), pause]);
      cell(tr, [span(row.assignee_name || root.dataset.textUnassigned, row.assignee_name ? "" : "inbox-quiet")]);
      body.appendChild(tr);
    });
    document.getElementById("inbox-empty").hidden = shown.length > 0;
    // Notify for conversations that were not in the inbox at the last look, whatever the tab.
    const ids = new Set(data.rows.map(function (row) { return row.dialogue_id; }));
    if (known !== null) {
      data.rows.forEach(function (row) { if (!known.has(row.dialogue_id)) notify(row); });
    }
    known = ids;
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { if (!response.ok) throw new Error(String(response.status)); return response.json(); })
      .then(function (data) { status.textContent = ""; draw(data); })
      .catch(function () { status.textContent = root.dataset.textOffline; })
      .finally(function () { timer = window.setTimeout(poll, document.hidden ? pollMs * 3 : pollMs); });
  }

  root.querySelectorAll(".inbox-tabs a").forEach(function (tab) {
    tab.addEventListener("click", function (event) {
      event.preventDefault();
      which = tab.dataset.filter;
      history.replaceState(null, "", "?filter=" + which);
      window.clearTimeout(timer);
      poll();
    });
  });
  poll();
})();
