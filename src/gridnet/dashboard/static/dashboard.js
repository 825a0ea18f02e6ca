// Draws every <canvas data-chart="..."> (a Chart.js configuration as JSON) on load and after
// htmx swaps new content in; window.gridnetCharts keeps them by canvas id (the browser tests
// read their figures there).
(function () {
  window.gridnetCharts = {};
  function draw(root) {
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas.dataset.drawn) return;
      canvas.dataset.drawn = "1";
      var config = JSON.parse(canvas.dataset.chart);
      config.options = Object.assign({ animation: false, maintainAspectRatio: false }, config.options || {});
      window.gridnetCharts[canvas.id] = new Chart(canvas, config);
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:afterSwap", function (event) { draw(event.target); });
})();
