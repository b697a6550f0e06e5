// agglo explore: the page's one script. Bokeh runs it once the document is ready, with
// `payload` (the cube's arrays, deflate-compressed and base64-encoded, see views/explore_data.py)
// and the page's models as arguments. Every redraw reads the arrays in memory: no round trip.
const P = payload;
const MODES = ["commute", "freight"];
const n = P.n_towns;
const NO_CORE = "#c8c8c8";

async function inflate(b64, Type) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Type(await new Response(stream).arrayBuffer());
}

function hull(points) {
  // Andrew's monotone chain: the convex hull of [x, y] points, counter-clockwise.
  const p = points.slice().sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (p.length < 3) return p;
  const cross = (o, a, b) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower = [];
  for (const q of p) {
    while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], q) <= 0) lower.pop();
    lower.push(q);
  }
  const upper = [];
  for (let i = p.length - 1; i >= 0; i--) {
    const q = p[i];
    while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], q) <= 0) upper.pop();
    upper.push(q);
  }
  return lower.slice(0, -1).concat(upper.slice(0, -1));
}

function people(x) {
  return x >= 1e6 ? (x / 1e6).toFixed(2) + " M" : x >= 1e3 ? Math.round(x / 1e3) + " k" : String(Math.round(x));
}

function viridis(f) {
  // Bokeh's Viridis256, sampled at 11 stops and interpolated.
  const stops = [
    [68, 1, 84], [72, 36, 117], [65, 68, 135], [53, 95, 141], [42, 120, 142], [33, 145, 140],
    [34, 168, 132], [68, 191, 112], [122, 209, 81], [189, 223, 38], [253, 231, 37],
  ];
  if (!(f >= 0)) return NO_CORE;
  const x = Math.min(f, 1) * 10, i = Math.min(Math.floor(x), 9), w = x - i;
  const c = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * w));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

function flatIndex() {
  if (P.sample_dim !== null) return sliders[0].value;
  let s = 0;
  for (let d = 0; d < P.shape.length; d++) {
    const slider = P.slider_of_dim[d] === null ? null : sliders[P.slider_of_dim[d]];
    s = s * P.shape[d] + (slider === null ? 0 : slider.value);
  }
  return s;
}

function scenarioText(s) {
  if (P.sample_dim !== null) {
    return `${P.sample_dim} ${s}: ` + Object.entries(P.sample_values).map(([k, v]) => `${k} = ${v[s]}`).join(", ");
  }
  const parts = [];
  let rest = s;
  for (let d = P.shape.length - 1; d >= 0; d--) {
    parts.unshift(`${P.dims[d]} = ${P.dim_values[d][rest % P.shape[d]]}`);
    rest = Math.floor(rest / P.shape[d]);
  }
  return parts.join(", ") || "the configured scenario";
}

function draw(A, s, m) {
  // The arrays are laid out (mode, town, scenario): one town's values over the scenarios are
  // neighbours, which is what makes them compress well.
  const S = P.n_scenarios;
  const layer = layerPick === null ? 0 : layerPick.active;
  const core = new Int32Array(n), color = new Array(n), coreName = new Array(n);
  const share = new Array(n), reach = new Int32Array(n);
  const members = new Map();
  for (let t = 0; t < n; t++) {
    const at = (m * n + t) * S + s;
    const c = A.core[at];
    core[t] = c;
    const q = A.share[at];
    share[t] = q === 255 ? "none reachable" : (q / 2.5).toFixed(1) + " %";
    reach[t] = A.reach[at];
    coreName[t] = c < 0 ? "none" : P.names[c];
    if (layer === 1) color[t] = viridis(P.stability[MODES[m]].modal_frequency[t]);
    else if (layer === 2) color[t] = viridis(P.stability[MODES[m]].p_member[t]);
    else color[t] = c < 0 ? NO_CORE : P.palette[P.core_rank[c] % P.palette.length];
    if (c >= 0) {
      if (!members.has(c)) members.set(c, []);
      members.get(c).push(t);
    }
  }
  towns[m].data = { ...towns[m].data, core, color, core_name: coreName, share, reach };
  const cx = [], cy = [], cn = [], cc = [];
  const hx = [], hy = [], hc = [];
  const sizes = [];
  for (const [c, list] of members) {
    // Every core is a star; only those with members (agglomerations) are named.
    cx.push(P.x[c]); cy.push(P.y[c]); cn.push(list.length > 1 ? P.names[c] : "");
    cc.push(P.palette[P.core_rank[c] % P.palette.length]);
    let pop = 0;
    for (const t of list) pop += P.population[t];
    sizes.push([pop, list.length - 1, c]);
    if (list.length >= 3) {
      const h = hull(list.map((t) => [P.x[t], P.y[t]]));
      if (h.length >= 3) {
        hx.push(h.map((q) => q[0])); hy.push(h.map((q) => q[1]));
        hc.push(P.palette[P.core_rank[c] % P.palette.length]);
      }
    }
  }
  sizes.sort((a, b) => b[0] - a[0] || a[2] - b[2]);
  const agglos = sizes.filter((v) => v[1] > 0);
  // Names for the largest agglomerations only (a national map would be all labels).
  const named = new Set(agglos.slice(0, P.max_labels).map((v) => P.names[v[2]]));
  cores[m].data = { x: cx, y: cy, name: cn.map((name) => (named.has(name) ? name : "")), color: cc };
  hulls[m].data = { xs: hx, ys: hy, color: hc };
  const cov = P.coverage[s * 2 + m];
  summaries[m].text =
    `<b>${MODES[m]}</b>: coverage ${Number.isFinite(cov) ? (100 * cov).toFixed(1) + " %" : "n/a"}, ` +
    `${P.n_agglomerations[s * 2 + m]} agglomerations` +
    (agglos.length ? "; largest: " + agglos.slice(0, 3).map((v) => `${P.names[v[2]]} ${people(v[0])}/${v[1]}`).join(", ") : "");
  return Array.from(core);
}

const state = { ready: false, scenario: null, cores: {}, redraw_ms: null, painted_ms: null };
window.aggloExplore = state;

function show() {
  const t0 = performance.now();
  const s = flatIndex();
  state.scenario = s;
  for (let m = 0; m < 2; m++) state.cores[MODES[m]] = draw(state.arrays, s, m);
  heading.text = `<b>scenario ${s + 1} of ${P.n_scenarios}</b>: ${scenarioText(s)}`;
  state.redraw_ms = performance.now() - t0;
  // Bokeh paints on the next animation frame; the one after it sees the painted maps.
  state.painted_ms = null;
  requestAnimationFrame(() => requestAnimationFrame(() => { state.painted_ms = performance.now() - t0; }));
}

(async () => {
  state.arrays = {
    core: await inflate(P.core, Int32Array),
    share: await inflate(P.share, Uint8Array),
    reach: await inflate(P.reach, Int32Array),
  };
  state.show = show;
  show();
  state.ready = true;
})();
