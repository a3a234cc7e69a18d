// Guidance-schedule editor: draws the curves as SVG with the step positions marked; drag a point to change it.
// props.value is JSON: {"schedule": {channel: [[p, v], ...]}, "steps": N}. On release it writes the new value
// and triggers 'change'; the server normalises it and sends it back (watch → redraw).
const COLORS = {guidance: '#e8590c', true_cfg: '#1c7ed6', control: '#2f9e44', regions: '#9c36b5'};
const RANGE = {guidance: [0, 12], true_cfg: [0, 12], control: [0, 2], regions: [0, 1]};
const W = 520, H = 220, L = 34, R = 12, T = 12, B = 26;
let drag = null;
let current = null;

function parse() {
  try { return JSON.parse(props.value || '{}'); } catch (e) { return {}; }
}
const px = p => L + p * (W - L - R);
const py = (ch, v) => T + (1 - (v - RANGE[ch][0]) / (RANGE[ch][1] - RANGE[ch][0])) * (H - T - B);

function render(state) {
  const sched = state.schedule || {};
  const steps = Math.max(1, state.steps || 1);
  let s = `<svg viewBox="0 0 ${W} ${H}" width="100%" style="max-width:${W}px;touch-action:none" class="sched-svg">`;
  s += `<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#999"/>`;
  for (let i = 0; i < steps; i++) {
    const p = steps === 1 ? 0 : i / (steps - 1);
    s += `<line x1="${px(p)}" x2="${px(p)}" y1="${T}" y2="${H - B}" stroke="#ddd" stroke-dasharray="2,3"/>`;
    s += `<text x="${px(p)}" y="${H - 8}" font-size="9" text-anchor="middle" fill="#888">${i + 1}</text>`;
  }
  for (const ch of Object.keys(sched)) {
    const pts = sched[ch];
    if (!Array.isArray(pts) || !pts.length || !(ch in RANGE)) continue;
    const line = [[0, pts[0][1]], ...pts, [1, pts[pts.length - 1][1]]];
    s += `<polyline fill="none" stroke="${COLORS[ch]}" stroke-width="2" points="${line.map(q => `${px(q[0])},${py(ch, q[1])}`).join(' ')}"/>`;
    pts.forEach((q, i) => {
      s += `<circle class="pt" data-ch="${ch}" data-i="${i}" cx="${px(q[0])}" cy="${py(ch, q[1])}" r="7" fill="${COLORS[ch]}" stroke="#fff" stroke-width="2" style="cursor:grab"><title>${ch} p=${q[0].toFixed(2)} value=${q[1].toFixed(2)}</title></circle>`;
    });
    s += `<text x="${L + 4}" y="${T + 12 + 12 * Object.keys(sched).indexOf(ch)}" font-size="11" fill="${COLORS[ch]}">${ch} (${RANGE[ch][0]}–${RANGE[ch][1]})</text>`;
  }
  s += `</svg>`;
  element.querySelector('.sched-root').innerHTML = s;
}

function draw() {
  current = parse();
  render(current);
}

element.addEventListener('pointerdown', ev => {
  const c = ev.target.closest ? ev.target.closest('circle.pt') : null;
  if (!c) return;
  drag = {ch: c.dataset.ch, i: Number(c.dataset.i)};
  ev.preventDefault();
});
element.addEventListener('pointermove', ev => {
  if (!drag) return;
  const svg = element.querySelector('svg');
  const box = svg.getBoundingClientRect();
  const x = (ev.clientX - box.left) * W / box.width, y = (ev.clientY - box.top) * H / box.height;
  const pts = current.schedule[drag.ch];
  const lo = drag.i > 0 ? pts[drag.i - 1][0] : 0, hi = drag.i < pts.length - 1 ? pts[drag.i + 1][0] : 1;
  const p = Math.min(hi, Math.max(lo, (x - L) / (W - L - R)));
  const [r0, r1] = RANGE[drag.ch];
  const v = Math.min(r1, Math.max(r0, r0 + (1 - (y - T) / (H - T - B)) * (r1 - r0)));
  pts[drag.i] = [Math.round(p * 100) / 100, Math.round(v * 100) / 100];
  render(current);
});
const finish = () => {
  if (!drag) return;
  drag = null;
  props.value = JSON.stringify(current);
  trigger('change');
};
element.addEventListener('pointerup', finish);
element.addEventListener('pointerleave', finish);
draw();
watch('value', draw);
