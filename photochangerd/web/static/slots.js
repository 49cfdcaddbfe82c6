// The slot page's conveniences; the page works without them (docs/web.md, "Slot pages").
"use strict";

// Provider/operation: show the chosen one's settings at once.  Every choice's fieldset is in
// the page (hidden and disabled but the chosen one), so switching needs no request; the
// hidden provider/operation fields of the save form follow the selects.
(() => {
  const provider = document.querySelector("[data-provider-select]");
  const operation = document.querySelector("[data-operation-select]");
  if (!provider || !operation) return;
  const chosenProvider = document.querySelector("[data-chosen-provider]");
  const chosenOperation = document.querySelector("[data-chosen-operation]");
  const fieldsets = document.querySelectorAll("fieldset[data-choice]");

  const limitOperations = () => {
    let first = null;
    let keep = false;
    for (const option of operation.options) {
      const mine = option.dataset.provider === provider.value;
      option.hidden = !mine;
      option.disabled = !mine;
      if (mine && !first) first = option;
      if (mine && option.selected) keep = true;
    }
    for (const group of operation.querySelectorAll("optgroup")) {
      group.hidden = group.dataset.provider !== provider.value;
    }
    if (!keep && first) first.selected = true;
  };

  const show = () => {
    const choice = `${provider.value}/${operation.value}`;
    let found = false;
    for (const fieldset of fieldsets) {
      const on = fieldset.dataset.choice === choice;
      fieldset.hidden = !on;
      fieldset.disabled = !on;
      found = found || on;
    }
    if (found) {
      chosenProvider.value = provider.value;
      chosenOperation.value = operation.value;
    }
  };

  provider.addEventListener("change", () => { limitOperations(); show(); });
  operation.addEventListener("change", show);
  limitOperations();
  show(); // the selects may have been restored by the browser (back/forward)
  for (const element of document.querySelectorAll("[data-no-js]")) element.hidden = true;
})();

// Test run: a "processing…" state while the photo runs (the answer is a normal page load).
(() => {
  const reset = [];
  for (const form of document.querySelectorAll("form[data-processing]")) {
    const status = form.querySelector("[data-processing-status]");
    const button = form.querySelector("button[type=submit]");
    const label = button ? button.textContent : "";
    form.addEventListener("submit", () => {
      if (status) status.hidden = false;
      if (button) {
        button.disabled = true;
        button.textContent = "Processing…";
      }
      form.setAttribute("aria-busy", "true");
    });
    reset.push(() => {
      if (status) status.hidden = true;
      if (button) {
        button.disabled = false;
        button.textContent = label;
      }
      form.removeAttribute("aria-busy");
    });
  }
  // Back to a page kept in the back/forward cache: not processing any more.
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) for (const undo of reset) undo();
  });
})();

// Template upload: drop an image on the form as well as picking it.
(() => {
  for (const zone of document.querySelectorAll("[data-dropzone]")) {
    const input = zone.querySelector("input[type=file]");
    if (!input) continue;
    for (const hint of zone.querySelectorAll("[data-drop-hint]")) hint.hidden = false;
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("dragging");
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
      }
    });
  }
})();
