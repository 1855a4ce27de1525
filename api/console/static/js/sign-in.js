// A console link may carry the token in the fragment (#token=...): the
// fragment never reaches the server or its logs. Fill the form, forget it.
(function () {
  var match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (!match) { return; }
  var field = document.getElementById("token");
  if (field) { field.value = decodeURIComponent(match[1]); }
  history.replaceState(null, "", window.location.pathname + window.location.search);
})();
