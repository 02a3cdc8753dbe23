// certway admin UI: small progressive enhancements; every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Ask before irreversible actions (forms marked data-confirm). The server asks again on a
  // page of its own unless the form says confirmed=yes, which the answer "OK" adds here.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      // data-confirm-field: ask only when that field leaves its current or a safe value
      const field = form.dataset.confirmField;
      if (field) {
        const value = new FormData(form).get(field);
        if (value === form.dataset.confirmCurrent || value === form.dataset.confirmSafe) return;
      }
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
        return;
      }
      let answer = form.querySelector("input[name=confirmed]");
      if (!answer) {
        answer = document.createElement("input");
        answer.type = "hidden";
        answer.name = "confirmed";
        form.appendChild(answer);
      }
      answer.value = "yes";
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
