// Pose editor: the figures' 18 OpenPose keypoints drawn as SVG in the OpenPose colours on black; drag a point to
// move it (Shift-drag moves the whole figure), click a point to select its figure. props.value is JSON:
// {"figures": [[[x, y] | null, ...18], ...], "selected": k, "width": W, "height": H, "feed": bool} with x, y
// fractions of the output size; feed = the user moved a point (the map then goes into the picked control unit).
// On release it writes the new value and triggers 'change'; the server validates it, redraws the map and sends
// the value back (watch → redraw).
const NAMES = ['nose', 'neck', 'right shoulder', 'right elbow', 'right wrist', 'left shoulder', 'left elbow',
  'left wrist', 'right hip', 'right knee', 'right ankle', 'left hip', 'left knee', 'left ankle', 'right eye',
  'left eye', 'right ear', 'left ear'];
const LIMBS = [[1, 2], [1, 5], [2, 3], [3, 4], [5, 6], [6, 7], [1, 8], [8, 9], [9, 10], [1, 11], [11, 12],
  [12, 13], [1, 0], [0, 14], [14, 16], [0, 15], [15, 17]];
const COLOURS = [[255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0],
  [0, 255, 0], [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255],
  [85, 0, 255], [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85]];
const SIDE = 360;
let state = null;
let drag = null;

const rgb = (c, f) => `rgb(${c.map(v => Math.floor(v * f)).join(',')})`;
const clip = v => Math.min(1, Math.max(0, v));
const round = v => Math.round(v * 10000) / 10000;

function parse() {
  try {
    const s = JSON.parse(props.value || '{}');
    return {figures: Array.isArray(s.figures) ? s.figures : [], selected: s.selected || 0,
            width: s.width || 1, height: s.height || 1};
  } catch (e) { return {figures: [], selected: 0, width: 1, height: 1}; }
}

function size() {
  const r = state.width / state.height;
  return r >= 1 ? [SIDE, SIDE / r] : [SIDE * r, SIDE];
}

function render() {
  const [w, h] = size();
  let s = `<svg viewBox="0 0 ${w} ${h}" width="100%" style="max-width:${w}px;touch-action:none;user-select:none" class="pose-svg">`;
  s += `<rect x="0" y="0" width="${w}" height="${h}" fill="#000"/>`;
  state.figures.forEach((fig, f) => {
    const on = f === state.selected;
    for (let l = 0; l < LIMBS.length; l++) {
      const [a, b] = LIMBS[l];
      if (!fig[a] || !fig[b]) continue;
      s += `<line x1="${fig[a][0] * w}" y1="${fig[a][1] * h}" x2="${fig[b][0] * w}" y2="${fig[b][1] * h}" stroke="${rgb(COLOURS[l], 0.6)}" stroke-width="5" stroke-linecap="round" opacity="${on ? 1 : 0.6}"/>`;
    }
  });
  state.figures.forEach((fig, f) => {
    const on = f === state.selected;
    fig.forEach((p, i) => {
      if (!p) return;
      s += `<circle class="kp" data-f="${f}" data-i="${i}" cx="${p[0] * w}" cy="${p[1] * h}" r="${on ? 6 : 5}" fill="${rgb(COLOURS[i], 1)}" stroke="${on ? '#fff' : '#555'}" stroke-width="${on ? 1.5 : 1}" style="cursor:grab"><title>figure ${f + 1}: ${NAMES[i]}</title></circle>`;
    });
  });
  if (!state.figures.length) {
    s += `<text x="${w / 2}" y="${h / 2}" fill="#aaa" font-size="13" text-anchor="middle">no figure — pick a preset or add one</text>`;
  }
  s += `</svg>`;
  element.querySelector('.pose-root').innerHTML = s;
}

function draw() {
  if (drag) return;  // the server's echo of an older value must not undo a drag in progress
  state = parse();
  render();
}

function commit(moved) {
  state.feed = moved;
  props.value = JSON.stringify(state);
  trigger('change');
}

element.addEventListener('pointerdown', ev => {
  const c = ev.target.closest ? ev.target.closest('circle.kp') : null;
  if (!c) return;
  drag = {f: Number(c.dataset.f), i: Number(c.dataset.i), whole: ev.shiftKey, x: ev.clientX, y: ev.clientY,
          moved: false, origin: state.figures[Number(c.dataset.f)].map(p => p && p.slice())};
  state.selected = drag.f;
  render();
  ev.preventDefault();
});
element.addEventListener('pointermove', ev => {
  if (!drag) return;
  const box = element.querySelector('svg').getBoundingClientRect();
  const dx = (ev.clientX - drag.x) / box.width, dy = (ev.clientY - drag.y) / box.height;
  const fig = state.figures[drag.f];
  if (drag.whole) {
    drag.origin.forEach((p, i) => { if (p) fig[i] = [round(clip(p[0] + dx)), round(clip(p[1] + dy))]; });
  } else {
    const p = drag.origin[drag.i];
    fig[drag.i] = [round(clip(p[0] + dx)), round(clip(p[1] + dy))];
  }
  drag.moved = true;
  render();
});
const finish = () => {
  if (!drag) return;
  const moved = drag.moved;
  drag = null;
  commit(moved);
};
element.addEventListener('pointerup', finish);
element.addEventListener('pointerleave', finish);
draw();
watch('value', draw);
