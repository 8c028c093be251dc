/* The channel page's small helpers, vendored, no dependencies:
   - <button data-copy-target="ID"> copies the value (an input) or the text (anything else)
     of the element with that id;
   - <form data-confirm="question"> asks before it is submitted. */
(function () {
  "use strict";
  function copied(button) {
    button.textContent = button.dataset.copiedLabel || "Copied";
  }
  function legacyCopy(source, button) {
    // Plain-http deployments have no Clipboard API: select the text and use the old command.
    if (source.select) {
      source.select();
    } else {
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
    try { document.execCommand("copy"); } catch (e) { /* the text stays selected for Ctrl+C */ }
    copied(button);
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-copy-target]") : null;
    if (!button) { return; }
    var source = document.getElementById(button.dataset.copyTarget);
    if (!source) { return; }
    event.preventDefault();
    var text = source.value !== undefined ? source.value : source.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { copied(button); }, function () { legacyCopy(source, button); });
    } else {
      legacyCopy(source, button);
    }
  });
  document.addEventListener("submit", function (event) {
    var question = event.target.dataset ? event.target.dataset.confirm : null;
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });
})();
