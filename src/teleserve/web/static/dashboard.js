// Teleserve console dashboard: draws the charts whose data the page embeds as JSON
// (#dashboard-data), with the vendored ECharts. Labels arrive translated; money arrives
// in yuan. Charts without data have no container: the page says so itself.
(function () {
  "use strict";
  function option(chart) {
    var money = chart.money;
    var tooltip = {
      trigger: chart.kind === "pie" ? "item" : "axis",
      valueFormatter: money ? function (v) { return "¥" + Number(v).toFixed(2); } : undefined
    };
    if (chart.kind === "pie") {
      return {
        tooltip: tooltip,
        legend: { type: "scroll", bottom: 0 },
        series: [{
          name: chart.series[0].name,
          type: "pie",
          radius: ["35%", "65%"],
          data: chart.categories.map(function (label, i) {
            return { name: label, value: chart.series[0].values[i] };
          })
        }]
      };
    }
    var stacked = chart.kind === "stacked_bar";
    return {
      tooltip: tooltip,
      legend: chart.series.length > 1 ? { type: "scroll", top: 0 } : undefined,
      grid: { left: 8, right: 8, top: chart.series.length > 1 ? 36 : 16, bottom: 8, containLabel: true },
      xAxis: { type: "category", data: chart.categories, axisLabel: { hideOverlap: true } },
      yAxis: { type: "value", minInterval: money ? 0 : 1 },
      series: chart.series.map(function (s) {
        return { name: s.name, type: "bar", stack: stacked ? "total" : undefined, data: s.values };
      })
    };
  }
  function draw() {
    var holder = document.getElementById("dashboard-data");
    if (!holder || typeof echarts === "undefined") return;
    var data = JSON.parse(holder.textContent);
    var drawn = [];
    document.querySelectorAll(".chart[data-chart-index]").forEach(function (element) {
      var chart = data.charts[Number(element.getAttribute("data-chart-index"))];
      var instance = echarts.init(element, null, { renderer: "canvas" });
      instance.setOption(option(chart));
      drawn.push(instance);
    });
    window.addEventListener("resize", function () {
      drawn.forEach(function (instance) { instance.resize(); });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
