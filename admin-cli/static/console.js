// The console page: one EventSource feed (about once a second) draws everything; actions are
// fetch() calls to the console server, which makes the gRPC call with the operator's token.
'use strict';

const $ = (id) => document.getElementById(id);
const WINDOW = 300; // seconds of chart history
const OUTCOMES = [
  ['WON', 'won', '#2e7d32'],
  ['ALREADY_GRABBED', 'already grabbed', '#1565c0'],
  ['SOLD_OUT', 'sold out', '#ef6c00'],
  ['NOT_STARTED', 'not started', '#6a1b9a'],
  ['ENDED', 'ended', '#546e7a'],
  ['FORBIDDEN', 'forbidden', '#c62828'],
  ['UNAUTHENTICATED', 'verification error', '#000000'],
];
const COUNTS = {
  WON: 'wonCount',
  ALREADY_GRABBED: 'alreadyGrabbedCount',
  SOLD_OUT: 'soldOutCount',
  NOT_STARTED: 'notStartedCount',
  ENDED: 'endedCount',
  FORBIDDEN: 'forbiddenCount',
};

/** Integer cents (a string) as yuan, without floating point. */
function yuan(cents) {
  const c = BigInt(cents);
  const a = c < 0n ? -c : c;
  return `${c < 0n ? '-' : ''}¥${(a / 100n).toLocaleString('en-US')}.${String(a % 100n).padStart(2, '0')}`;
}
const num = (n) => Number(n).toLocaleString('en-US');

function setText(id, value, cls) {
  const el = $(id);
  el.textContent = value;
  if (cls !== undefined) el.className = cls;
}

function showError(message) {
  const el = $('error');
  el.hidden = !message;
  el.textContent = message || '';
}

function notice(message) {
  const el = $('notice');
  el.hidden = !message;
  el.textContent = message || '';
}

function row(cells, attrs = {}) {
  const tr = document.createElement('tr');
  for (const [k, v] of Object.entries(attrs)) tr.setAttribute(k, v);
  for (const c of cells) {
    const td = document.createElement('td');
    td.textContent = c;
    tr.appendChild(td);
  }
  return tr;
}

let selected = location.hash.slice(1) || null;
let source;
let chart;
let series = [[], ...OUTCOMES.map(() => [])];
let lastView;

function makeChart() {
  const el = $('chart');
  el.textContent = '';
  series = [[], ...OUTCOMES.map(() => [])];
  chart = new uPlot(
    {
      width: Math.min(900, document.body.clientWidth - 60),
      height: 220,
      scales: { x: { time: true } },
      series: [
        {},
        ...OUTCOMES.map(([, label, stroke]) => ({
          label,
          stroke,
          width: 2,
          value: (u, v) => (v == null ? 'n/a' : num(v)),
        })),
      ],
      axes: [{}, { label: 'grabs / s' }],
    },
    series,
    el,
  );
}

function drawChart(v, atMs) {
  series[0].push(atMs / 1000);
  OUTCOMES.forEach(([key], i) => series[i + 1].push(v.grabsPerSecond[key] ?? null));
  if (series[0].length > WINDOW) for (const s of series) s.shift();
  chart.setData(series);
  const el = $('chart');
  el.dataset.points = String(series[0].length);
  el.dataset.grabs = String(series.slice(1).reduce((t, s) => t + s.reduce((a, b) => a + (b || 0), 0), 0));
}

function drawList(campaigns) {
  const body = $('campaigns');
  body.textContent = '';
  for (const c of campaigns) {
    const tr = row(
      [
        c.name,
        c.ownerId,
        c.state.replace('CAMPAIGN_STATE_', '').toLowerCase().replace('_', ' '),
        `${num(c.packetsClaimed)} of ${num(c.packetCount)}`,
        `${yuan(c.amountClaimedCents)} of ${yuan(c.totalCents)}`,
      ],
      { 'data-id': c.campaignId },
    );
    if (c.campaignId === selected) tr.className = 'selected';
    tr.addEventListener('click', () => select(c.campaignId));
    body.appendChild(tr);
  }
}

function drawSwitches(switches) {
  const box = $('switches');
  box.textContent = '';
  for (const s of switches) {
    const b = document.createElement('button');
    b.dataset.switch = s.name;
    b.dataset.on = String(s.on);
    b.className = s.on ? 'on' : '';
    b.title = s.description;
    b.textContent = `${s.name}: ${s.on ? 'ON' : 'off'}`;
    b.addEventListener('click', () =>
      act(
        `Turn ${s.name} ${s.on ? 'off' : 'ON'}?`,
        '/api/switches',
        { name: s.name, on: !s.on },
        (r) => `switch ${r.name} is now ${r.on ? 'ON' : 'off'}`,
      ),
    );
    box.appendChild(b);
  }
}

function countdown(v) {
  if (!v.nextBatchAt) return '–';
  const ms = Date.parse(v.nextBatchAt) - Date.now();
  return ms > 0 ? `${Math.ceil(ms / 1000)} s` : 'now';
}

function drawView(v, atMs) {
  lastView = v;
  $('detail').hidden = false;
  const s = v.stats;
  setText('d-name', v.campaign.name);
  setText('d-id', v.campaign.campaignId);
  setText('d-state', v.state.replace('CAMPAIGN_STATE_', '').toLowerCase().replace('_', ' '));
  setText('released', `${num(s.packetsReleased)} / ${num(s.packetsTotal)}`);
  setText('claimed', num(s.packetsClaimed));
  setText('remaining', num(Math.max(0, s.packetsReleased - s.packetsClaimed)));
  setText('next-batch', countdown(v));
  const b = $('batches');
  b.textContent = '';
  for (const x of v.batches) {
    const status = x.released ? 'released' : x.opensAt === v.nextBatchAt ? `next, in ${countdown(v)}` : 'waiting';
    const claimed = x.remaining == null ? '–' : num(x.packets - x.remaining);
    const left = x.remaining == null ? '–' : num(x.remaining);
    b.appendChild(
      row([String(x.index + 1), new Date(x.opensAt).toLocaleTimeString(), num(x.packets), claimed, left, status]),
    );
  }
  const o = $('outcomes');
  o.textContent = '';
  for (const [key, label] of OUTCOMES) {
    const total =
      key === 'UNAUTHENTICATED'
        ? v.unauthenticated == null
          ? 'n/a'
          : `${num(v.unauthenticated)} (all campaigns)`
        : num(s[COUNTS[key]]);
    o.appendChild(row([label, total], { 'data-outcome': key }));
  }
  const d = v.delivery;
  setText('delivered', d ? `${num(d.delivered)} (${yuan(d.deliveredCents)})` : 'n/a');
  setText('in-flight', d ? num(d.inFlight) : 'n/a');
  setText('dead-letters', d ? num(d.deadLettered) : 'n/a', d && Number(d.deadLettered) > 0 ? 'bad' : '');
  setText('gift-rate', v.deliveredPerSecond == null ? 'n/a' : `${num(v.deliveredPerSecond)} / s`);
  const m = v.money;
  setText(
    'money-sum',
    `${yuan(s.amountClaimedCents)} + ${yuan(s.amountRemainingCents)} = ${yuan(m.claimedPlusRemainingCents)} of ${yuan(m.totalCents)} ${m.claimedPlusRemainingOk ? '✓' : '✗'}`,
    m.claimedPlusRemainingOk ? 'ok' : 'bad',
  );
  if (m.settlement) {
    const t = m.settlement;
    setText(
      'money-settle',
      `${yuan(t.awardedCents)} + ${yuan(t.refundCents)} = ${yuan(BigInt(t.awardedCents) + BigInt(t.refundCents))} ${t.ok ? '✓' : '✗'}`,
      t.ok ? 'ok' : 'bad',
    );
    setText('refund', yuan(t.refundCents));
  } else {
    setText('money-settle', 'not settled', '');
    setText('refund', '–');
  }
  if (m.reconcile) {
    const r = m.reconcile;
    setText(
      'money-reconcile',
      r.consistent
        ? `consistent ✓ (${new Date(r.at).toLocaleTimeString()})`
        : `NOT consistent: ${r.differences.join('; ')}`,
      r.consistent ? 'ok' : 'bad',
    );
  } else setText('money-reconcile', 'not run', '');
  drawChart(v, atMs);
}

function connect() {
  source?.close();
  source = new EventSource(selected ? `/api/events?campaign=${encodeURIComponent(selected)}` : '/api/events');
  source.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    setText('live', `live · ${new Date(msg.at).toLocaleTimeString()}`);
    if (msg.campaigns) drawList(msg.campaigns);
    if (msg.switches) drawSwitches(msg.switches);
    if (msg.campaign) drawView(msg.campaign, Date.parse(msg.at));
    $('live').dataset.errors = String(msg.errors.length);
    if (msg.errors.length) setText('live', `live · ${msg.errors.join('; ')}`);
  };
  source.onerror = async () => {
    // EventSource hides the status: ask once whether the session is the problem
    const r = await fetch('/api/switches');
    if (r.status === 401) {
      source.close();
      showError((await r.json()).error);
    } else setText('live', 'reconnecting…');
  };
}

function select(id) {
  selected = id;
  location.hash = id;
  lastView = undefined;
  makeChart();
  connect();
}

/** Asks, then POSTs; the service's error is shown as it said it. */
async function act(question, url, body, done) {
  if (!confirm(question)) return;
  showError('');
  notice('');
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const j = await r.json();
  if (!r.ok) return showError(j.error);
  notice(done(j));
  return j;
}

document.querySelectorAll('[data-action]').forEach((b) =>
  b.addEventListener('click', () => {
    const id = selected;
    const name = lastView?.campaign.name ?? id;
    const a = b.dataset.action;
    if (a === 'redrive') {
      return act(
        `Re-drive the dead letters of ${name}?`,
        '/api/deadletters/redrive',
        { campaignId: id },
        (r) => `re-driven ${r.redriven}, credited ${r.credited}, still parked ${r.failed}`,
      );
    }
    act(
      `${a[0].toUpperCase()}${a.slice(1)} campaign ${name}?`,
      `/api/campaigns/${encodeURIComponent(id)}/${a}`,
      {},
      (r) =>
        a === 'settle'
          ? `settled: ${yuan(r.amountAwardedCents)} awarded, ${yuan(r.refundCents)} refunded to ${r.ownerId}`
          : a === 'reconcile'
            ? r.consistent
              ? 'reconcile: consistent'
              : `reconcile: ${r.differences.join('; ')}`
            : `closed ${id}`,
    );
  }),
);

$('create-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const body = Object.fromEntries(new FormData(e.target).entries());
  const c = await act(
    `Create campaign "${body.name}": ${body.total} yuan in ${body.packets} packets?`,
    '/api/campaigns',
    body,
    (r) => `created campaign ${r.campaignId}`,
  );
  if (c) select(c.campaignId);
});

setInterval(() => lastView && setText('next-batch', countdown(lastView)), 250);
makeChart();
connect();
