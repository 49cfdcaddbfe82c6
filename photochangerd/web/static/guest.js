// PhotoChanger guest page: conveniences on top of a page that works without JavaScript.
"use strict";

// "Available until": the server writes UTC; show the viewer's own time zone instead.
for (const element of document.querySelectorAll("time[data-local]")) {
  const when = new Date(element.dateTime);
  if (!Number.isNaN(when.getTime())) {
    element.textContent = when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    element.title = element.dateTime;
  }
}

// Web Share, only where the browser has it (the button stays hidden elsewhere).  The photo the
// page shows is fetched ahead (from the browser's cache), so that a tap shares it right away:
// browsers allow share() only directly in response to the tap.
const share = document.querySelector("[data-share-url]");
if (share && typeof navigator.share === "function") {
  const extensions = { "image/jpeg": "jpg", "image/png": "png", "image/webp": "webp" };
  let photo = null;
  if (typeof navigator.canShare === "function" && typeof File === "function") {
    fetch(share.dataset.sharePhoto)
      .then((response) => (response.ok ? response.blob() : null))
      .then((blob) => {
        if (!blob) return;
        const name = "photo." + (extensions[blob.type] || "jpg");
        const file = new File([blob], name, { type: blob.type });
        if (navigator.canShare({ files: [file] })) {
          photo = file;
          share.dataset.photoReady = "true";
        }
      })
      .catch(() => {});
  }
  share.hidden = false;
  share.addEventListener("click", () => {
    const data = photo ? { files: [photo], url: share.dataset.shareUrl } : { url: share.dataset.shareUrl, title: document.title };
    navigator.share(data).catch(() => {}); // dismissed by the guest: nothing to do
  });
}
