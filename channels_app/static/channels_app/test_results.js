// The channel list's "last test" cells: while a test message is on its way, the list reads
// itself again every 1.5 s and swaps in each result as it comes, so the operator sees it
// without reloading. It stops when none is on its way, or after two minutes.
(() => {
  const PENDING = "#result_list td.field-last_test .test-pending";
  const started = Date.now();
  const pending = () => [...document.querySelectorAll(PENDING)].map((mark) => mark.closest("td"));
  const schedule = () => {
    if (pending().length && Date.now() - started < 120000) setTimeout(poll, 1500);
  };
  const poll = async () => {
    try {
      const response = await fetch(location.href, { credentials: "same-origin" });
      if (response.ok) {
        const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
        for (const cell of pending()) {
          const id = cell.closest("tr").querySelector("input.action-select")?.value;
          const box = id && fresh.querySelector(`#result_list input.action-select[value="${CSS.escape(id)}"]`);
          const now = box && box.closest("tr").querySelector("td.field-last_test");
          if (now && !now.querySelector(".test-pending")) cell.replaceWith(document.importNode(now, true));
        }
      }
    } finally {
      schedule();
    }
  };
  document.addEventListener("DOMContentLoaded", schedule);
})();
