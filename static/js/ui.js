// What the pages show at a glance, kept true as htmx swaps parts of them: the alarm count in the
// page's title, the copy buttons of batch ids, and the header summary's open/closed state.
(function () {
  // "(3) Batches · Batch dashboard": the count of the header's badge (open alarms nobody has
  // acknowledged), so a tab or a wall screen shows it. The server writes it at page load; this
  // keeps it current as the badge refreshes itself.
  var COUNT_PREFIX = /^\(\d+\)\s+/;
  function titleFollowsBadge() {
    var badge = document.getElementById("alarm-badge");
    if (!badge) return;
    var count = badge.querySelector(".alarm-count");
    var n = count ? parseInt(count.textContent, 10) : 0;
    var base = document.title.replace(COUNT_PREFIX, "");
    var title = n > 0 ? "(" + n + ") " + base : base;
    if (document.title !== title) document.title = title;
  }

  // Copy a batch id (button.copy[data-copy]); the button says "copied" for a moment.
  function copied(button) {
    button.classList.add("copied");
    button.setAttribute("title", "Copied");
    setTimeout(function () {
      button.classList.remove("copied");
      button.setAttribute("title", "Copy the batch id");
    }, 1500);
  }
  function copyText(text, button) {
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { copied(button); }, function () { fallbackCopy(text, button); });
    } else {
      fallbackCopy(text, button);
    }
  }
  function fallbackCopy(text, button) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    try {
      if (document.execCommand("copy")) copied(button);
    } finally {
      area.remove();
    }
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.copy[data-copy]") : null;
    if (!button) return;
    event.preventDefault();
    copyText(button.getAttribute("data-copy"), button);
  });

  // The header summary is swapped every minute: an account table someone opened stays open.
  var summaryOpen = null;
  document.addEventListener("htmx:beforeSwap", function (event) {
    var details = event.detail.target && event.detail.target.querySelector
      ? event.detail.target.querySelector("details.summary-details") : null;
    if (details) summaryOpen = details.open;
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    titleFollowsBadge();
    if (summaryOpen === null) return;
    var details = event.detail.target && event.detail.target.querySelector
      ? event.detail.target.querySelector("details.summary-details") : null;
    if (details) details.open = summaryOpen;
  });
  document.addEventListener("DOMContentLoaded", titleFollowsBadge);
})();
