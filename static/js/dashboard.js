// Timestamps: the server writes relative text and an absolute UTC title; show the title in the
// viewer's own time zone, also for rows that htmx swaps in later.
(function () {
  function localize(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) el.title = when.toLocaleString(undefined, { timeZoneName: "short" });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localize(document); });
  document.addEventListener("htmx:afterSettle", function (event) { localize(event.target); });
})();
