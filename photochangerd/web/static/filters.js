// Filter forms (statistics, jobs): show the new choice as soon as it is made (their button
// does the same without JavaScript).
"use strict";

document.querySelectorAll("form[data-autosubmit]").forEach((form) => {
  form.addEventListener("change", (event) => {
    if (event.target.matches("select")) form.requestSubmit();
  });
});
