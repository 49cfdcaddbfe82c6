// PhotoChanger console: small conveniences on top of pages that work without JavaScript.
"use strict";

// The async clipboard API exists only on https and localhost; a console opened at
// http://192.168.x.x falls back to selecting a temporary text field and execCommand("copy").
function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(text);
  }
  return new Promise((resolve, reject) => {
    const field = document.createElement("textarea");
    field.value = text;
    field.setAttribute("readonly", "");
    field.className = "visually-hidden";
    document.body.appendChild(field);
    field.select();
    const copied = document.execCommand("copy");
    field.remove();
    if (copied) { resolve(); } else { reject(new Error("copy refused")); }
  });
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const label = button.textContent;
  copyText(button.dataset.copy).then(
    () => { button.textContent = "Copied"; },
    () => { button.textContent = "Select and copy it by hand"; },
  ).finally(() => { setTimeout(() => { button.textContent = label; }, 1500); });
});
