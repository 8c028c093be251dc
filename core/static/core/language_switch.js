// The admin header's language switch: choosing a language submits its form.
document.addEventListener("change", (event) => {
  const select = event.target.closest("#language-switch select");
  if (select) select.form.submit();
});
