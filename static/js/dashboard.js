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

// Failed htmx requests are never silent. htmx swaps nothing on a 4xx/5xx answer or a network
// error, so the row (and its Cancel button) stays as it was; this says why, inside the row for a
// row's own requests, else in the page's notice region. A not-signed-in request is answered 401
// with HX-Redirect, which htmx follows (the whole page goes to sign in) and this leaves alone.
//
// Each request is followed on its XMLHttpRequest, set up when htmx is about to send it: by the
// time the answer comes, a row's poll may have swapped in a new row (same id) and left the
// element that asked detached, and htmx's own error events on a detached element never reach
// the document.
(function () {
  var MAX_SERVER_TEXT = 500;
  // A failed action's message (a cancel's) outlives the row's next polls, which swap in a new row:
  // by row id, until that row's next action.
  var sticky = {};

  function serverText(xhr) {
    var type = xhr.getResponseHeader("Content-Type") || "";
    if (type.indexOf("text/plain") !== 0) return "";
    var text = (xhr.responseText || "").trim();
    return text.length > MAX_SERVER_TEXT ? text.slice(0, MAX_SERVER_TEXT) + "…" : text;
  }

  function answerMessage(xhr, action) {
    var status = xhr.status;
    var text = serverText(xhr);
    var retry = action ? "Try again." : "It will retry.";
    if (status === 401) return text || "You are not signed in any more. Reload the page to sign in.";
    if (status === 403) {
      return text || "The dashboard refused this (your session changed — signed in again in another tab?). Reload the page and try again.";
    }
    if (status === 429) return text || "Too many requests: wait a moment. " + retry;
    if (status >= 500) return "The dashboard failed to answer (HTTP " + status + "). " + retry;
    return text || "The dashboard could not do this (HTTP " + status + "). Reload the page and try again.";
  }

  function networkMessage(action) {
    return action
      ? "Could not reach the dashboard. Check your connection and try again."
      : "Could not reach the dashboard. Check your connection; the row will retry.";
  }

  function rowErrorBox(row) {
    var box = row.querySelector(".row-error");
    if (!box) {
      box = document.createElement("div");
      box.className = "row-error";
      box.setAttribute("role", "status");
      var cells = row.querySelectorAll("td");
      (cells[2] || cells[cells.length - 1] || row).appendChild(box);
    }
    return box;
  }

  function pageNotice() {
    return document.getElementById("page-notice");
  }

  function show(request, text) {
    var row = request.rowId && document.getElementById(request.rowId);
    if (row) {
      rowErrorBox(row).textContent = "⚠ " + text;
      if (request.action) sticky[request.rowId] = text;
      return;
    }
    var notice = pageNotice();
    if (!notice) return;
    notice.textContent = text;
    notice.dataset.sticky = request.action ? "true" : "";
  }

  function answered(request, xhr) {
    if (xhr.getResponseHeader("HX-Redirect")) return; // htmx moves the whole page
    if (xhr.status >= 400) {
      show(request, answerMessage(xhr, request.action));
      return;
    }
    // A poll that answers clears a poll's page notice (a row's goes with the row it swaps out).
    var notice = pageNotice();
    if (!request.action && notice && notice.textContent && notice.dataset.sticky !== "true") notice.textContent = "";
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var detail = event.detail;
    var xhr = detail.xhr;
    if (!xhr) return;
    var verb = (detail.requestConfig && detail.requestConfig.verb) || "get";
    var row = detail.elt && detail.elt.closest ? detail.elt.closest("tr.batch-row") : null;
    var request = { action: verb.toLowerCase() !== "get", rowId: row ? row.id : "" };
    if (request.action) {
      // A new action clears the last one's message.
      if (row) {
        delete sticky[row.id];
        var box = row.querySelector(".row-error");
        if (box) box.textContent = "";
      }
      var notice = pageNotice();
      if (notice) { notice.textContent = ""; notice.dataset.sticky = ""; }
    }
    xhr.addEventListener("load", function () { answered(request, xhr); });
    xhr.addEventListener("error", function () { show(request, networkMessage(request.action)); });
    xhr.addEventListener("timeout", function () { show(request, networkMessage(request.action)); });
  });

  // A row swapped in by its poll keeps a failed action's message.
  document.addEventListener("htmx:load", function (event) {
    var row = event.target;
    if (row && row.matches && row.matches("tr.batch-row") && sticky[row.id]) {
      rowErrorBox(row).textContent = "⚠ " + sticky[row.id];
    }
  });
})();
