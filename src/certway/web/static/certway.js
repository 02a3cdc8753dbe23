// certway admin UI: small progressive enhancements; every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Ask before destructive actions (forms marked data-confirm).
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  // Live "Alternative name as it will appear" preview of the CSR forms.
  for (const form of document.querySelectorAll("form[data-preview]")) {
    const output = document.getElementById(form.dataset.previewTarget);
    if (!output) continue;
    let timer = null;
    const refresh = async () => {
      const params = new URLSearchParams();
      for (const [key, value] of new FormData(form)) {
        if (key !== "csrf" && typeof value === "string") params.append(key, value);
      }
      try {
        const response = await fetch(form.dataset.preview + "&" + params.toString(), {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        if (!response.ok) return;
        const data = await response.json();
        output.textContent = data.error ? data.error : data.names.join(", ");
        output.classList.toggle("bad", Boolean(data.error));
      } catch (_error) {
        // keep the server-rendered preview
      }
    };
    const schedule = () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(refresh, 250);
    };
    form.addEventListener("input", schedule);
    form.addEventListener("change", schedule);
  }
});
