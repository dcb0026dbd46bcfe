/**
 * "Monitoring": the served models of the project (`nbmlops serve`): each one's services (alive
 * while their heartbeat is fresh), routes (aliases, versions, split weights, shadow) and traffic.
 * Select one for its request rate over time per alias (a line chart), its drift per feature over
 * the recorded monitor results (`nbmlops monitor`, drift triggers) as sparklines, and the fires
 * of the drift triggers watching it. Drawn with the panel's own SVG helpers and chart palette
 * (no chart library); everything the store or a heartbeat holds is shown as text. Refreshed
 * every 5 s while shown, not at all while hidden.
 */
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { StoreGate, requestAPI, segment } from './api';
import { clear, formatTime, formatValue, h, message, s, showBanner } from './dom';
import { viewPoll } from './polling';
import { PALETTE } from './runsView';
import {
  DriftHistory,
  MonitoringDetail,
  MonitoringList,
  RateSeries,
  ScheduleFire,
  ServedModel,
  ServiceInfo,
  ServiceRoute
} from './types';

const EVERY_MS = 5000;
const WINDOWS: [number, string][] = [
  [60, 'last hour'],
  [360, 'last 6 hours'],
  [1440, 'last 24 hours']
];

export class MonitoringView extends Widget {
  constructor() {
    super();
    this.addClass('nbmlops-monitoring-view');
    this.title.label = 'Monitoring';
    const windowSelect = h(
      'select',
      {
        class: 'nbmlops-monitoring-window',
        'aria-label': 'Time window of the request rate',
        onChange: (e: Event) => {
          this.minutes = Number((e.target as HTMLSelectElement).value) || 60;
          this.load();
        }
      },
      ...WINDOWS.map(([m, label]) => h('option', { value: m, selected: m === this.minutes }, label))
    );
    this.node.appendChild(
      h(
        'div',
        { class: 'nbmlops-toolbar' },
        h('span', { class: 'nbmlops-dim' }, 'Served models and their traffic'),
        windowSelect,
        h(
          'button',
          { class: 'jp-mod-styled nbmlops-button', title: 'Refresh', onClick: () => this.load() },
          'Refresh'
        )
      )
    );
    this.node.appendChild(this.banner);
    this.list.setAttribute('aria-label', 'Served models');
    this.list.setAttribute('role', 'list');
    this.node.appendChild(this.list);
    this.node.appendChild(this.detail);
    this.poll = viewPoll(this, 'monitoring', EVERY_MS, () => this.fetch());
  }

  dispose(): void {
    this.poll.dispose();
    super.dispose();
  }

  protected onAfterShow(): void {
    this.load();
    void this.poll.start();
  }

  load(): void {
    void this.poll.refresh();
  }

  // -- data ------------------------------------------------------------------------------------

  private async fetch(): Promise<void> {
    try {
      const problem = await this.gate.check(null);
      if (problem !== null) {
        this.showError(problem);
        return;
      }
      const got = await requestAPI<MonitoringList>('monitoring');
      this.showError(null);
      this.served = got;
      if (this.selected !== null && !got.models.some(m => m.name === this.selected)) {
        this.selected = null; // its log and services are gone
      }
      if (this.selected === null && got.models.length) {
        this.selected = got.models[0].name;
      }
      this.renderList();
      if (this.selected !== null) {
        await this.loadModel(this.selected);
      } else {
        clear(this.detail);
      }
    } catch (error) {
      this.showError(error);
    }
  }

  private async loadModel(name: string): Promise<void> {
    const generation = ++this.generation;
    try {
      const got = await requestAPI<MonitoringDetail>(`monitoring/${segment(name)}`, {
        minutes: this.minutes
      });
      if (generation !== this.generation || this.selected !== name) {
        return; // another model was selected meanwhile
      }
      this.renderDetail(got);
    } catch (error) {
      if (generation === this.generation) {
        this.showError(error);
      }
    }
  }

  private showError(error: unknown): void {
    showBanner(
      this.banner,
      !error ? null : typeof error === 'string' ? error : this.gate.note(error)
    );
  }

  private select(name: string): void {
    this.selected = name;
    this.renderList();
    clear(this.detail);
    this.detail.appendChild(message('Loading…'));
    void this.loadModel(name);
  }

  // -- the list --------------------------------------------------------------------------------

  private renderList(): void {
    clear(this.list);
    const served = this.served;
    if (!served || !served.models.length) {
      const where = served?.predictions_dir ? ` under ${served.predictions_dir}/` : '';
      this.list.appendChild(
        message(
          'No served models yet. Serve one with `nbmlops serve NAME@champion`: its services ' +
            `and its logged traffic${where} show here.`
        )
      );
      return;
    }
    for (const m of served.models) {
      this.list.appendChild(this.modelRow(m));
    }
  }

  private modelRow(m: ServedModel): HTMLElement {
    const routes = m.services.filter(svc => svc.alive).flatMap(svc => svc.routes);
    const facts = [
      `${m.requests} request${m.requests === 1 ? '' : 's'}`,
      `${m.requests_last_hour} in the last hour`,
      m.last_request_at !== null ? `last ${formatTime(m.last_request_at)}` : 'no logged traffic'
    ];
    return h(
      'div',
      {
        class: `nbmlops-servedrow${m.name === this.selected ? ' jp-mod-selected' : ''}`,
        role: 'listitem',
        tabindex: 0,
        'data-model': m.name,
        'data-alive': m.alive ? 'true' : 'false',
        'aria-current': m.name === this.selected ? 'true' : null,
        onClick: () => this.select(m.name),
        onKeydown: (e: KeyboardEvent) => {
          if (e.key === 'Enter') {
            this.select(m.name);
          }
        }
      },
      h('span', { class: 'nbmlops-modelname' }, m.name),
      aliveChip(m.alive, m.services.length),
      h('div', { class: 'nbmlops-dim' }, facts.join(' · ')),
      h(
        'div',
        { class: 'nbmlops-chips' },
        ...uniqueRoutes(routes).map(routeChip),
        m.monitor ? driftChip(m.monitor.score, m.monitor.drifted, m.monitor.created_at) : null
      )
    );
  }

  // -- one model -------------------------------------------------------------------------------

  private renderDetail(d: MonitoringDetail): void {
    clear(this.detail);
    this.detail.appendChild(h('h3', {}, d.name));
    this.detail.appendChild(servicesTable(d.services));

    const minutes = d.bucket_seconds / 60;
    this.detail.appendChild(
      h(
        'h4',
        {},
        `Request rate (requests/min${minutes > 1 ? `, ${minutes}-minute buckets` : ''})`
      )
    );
    if (d.series.length) {
      this.detail.appendChild(rateChart(d));
    } else {
      this.detail.appendChild(message(`No logged requests in the ${windowName(d.minutes)}.`));
    }

    this.detail.appendChild(h('h4', {}, 'Drift per feature (PSI)'));
    this.detail.appendChild(driftTable(d.drift));

    this.detail.appendChild(h('h4', {}, 'Drift triggers'));
    this.detail.appendChild(firesList(d));
  }

  private banner = h('div', { class: 'nbmlops-banner' });
  private list = h('div', { class: 'nbmlops-served' });
  private detail = h('div', { class: 'nbmlops-monitoring-detail', 'aria-live': 'polite' });
  private gate = new StoreGate();
  private poll: Poll;
  private served: MonitoringList | null = null;
  private selected: string | null = null;
  private minutes = 60;
  private generation = 0;
}

// -- pieces ----------------------------------------------------------------------------------------

function windowName(minutes: number): string {
  const known = WINDOWS.find(([m]) => m === minutes);
  return known ? known[1] : `last ${minutes} minutes`;
}

function routeLabel(r: ServiceRoute): string {
  const who = r.alias ? `${r.alias} → v${r.version ?? '?'}` : `v${r.version ?? '?'}`;
  if (r.role === 'shadow') {
    return `${who} · shadow`;
  }
  return r.weight !== null && r.weight < 1 ? `${who} · ${Math.round(r.weight * 100)}%` : who;
}

function uniqueRoutes(routes: ServiceRoute[]): ServiceRoute[] {
  const seen = new Set<string>();
  return routes.filter(r => {
    const key = routeLabel(r);
    if (seen.has(key)) {
      return false;
    }
    seen.add(key);
    return true;
  });
}

function routeChip(r: ServiceRoute): HTMLElement {
  return h(
    'span',
    {
      class: `nbmlops-chip nbmlops-chip-alias nbmlops-chip-route${r.role === 'shadow' ? ' nbmlops-chip-shadow' : ''}`,
      'data-alias': r.alias,
      'data-version': r.version ?? '',
      'data-role': r.role,
      title:
        r.role === 'shadow'
          ? 'scored on every request and logged, its answer not returned'
          : r.weight !== null
            ? `answers ${Math.round(r.weight * 100)}% of requests`
            : 'answers requests'
    },
    routeLabel(r)
  );
}

function aliveChip(alive: boolean, services: number): HTMLElement {
  return h(
    'span',
    {
      class: `nbmlops-chip ${alive ? 'nbmlops-chip-alive' : 'nbmlops-chip-stopped'}`,
      title: alive
        ? 'a service answered its heartbeat in the last 10 s'
        : services
          ? 'no heartbeat for more than 10 s: the service stopped'
          : 'no service running; traffic was logged earlier'
    },
    alive ? '● serving' : '○ stopped'
  );
}

function driftChip(score: number | null, drifted: boolean, at: number): HTMLElement {
  return h(
    'span',
    {
      class: `nbmlops-chip ${drifted ? 'nbmlops-chip-invalid' : 'nbmlops-chip-valid'} nbmlops-chip-drift`,
      'data-drifted': drifted ? 'true' : 'false',
      title: `latest monitor result, ${formatTime(at)}`
    },
    `${drifted ? 'drift' : 'no drift'} ${score === null ? '–' : formatValue(score)}`
  );
}

function servicesTable(services: ServiceInfo[]): HTMLElement {
  if (!services.length) {
    return message('No service is running; the charts show logged traffic.');
  }
  const box = h('div', { class: 'nbmlops-services', role: 'list', 'aria-label': 'Services' });
  for (const svc of services) {
    const log = svc.log;
    box.appendChild(
      h(
        'div',
        { class: 'nbmlops-servicerow', role: 'listitem', 'data-alive': svc.alive ? 'true' : 'false' },
        aliveChip(svc.alive, 1),
        ' ',
        h('span', { title: `${svc.host ?? ''} pid ${svc.pid ?? '?'}` }, svc.url ?? ''),
        h(
          'div',
          {
            class: 'nbmlops-dim',
            title: log
              ? `log: ${log.written ?? 0} written, ${log.dropped ?? 0} dropped, ${log.pending ?? 0} pending`
              : 'prediction log off'
          },
          `${uniqueRoutes(svc.routes).map(routeLabel).join(', ')} · ${svc.requests} requests, ` +
            `${svc.errors} errors · pid ${svc.pid ?? '?'} on ${svc.host ?? '?'}`
        )
      )
    );
  }
  return box;
}

function seriesLabel(r: RateSeries): string {
  const who = r.alias ? `${r.alias} v${r.version ?? '?'}` : `v${r.version ?? '?'}`;
  return r.role === 'shadow' ? `${who} (shadow)` : who;
}

function clock(epoch: number): string {
  return new Date(epoch * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** Request rate per minute over the window, one line per (alias, version, role). */
function rateChart(d: MonitoringDetail): HTMLElement {
  const width = 280;
  const height = 130;
  const left = 34;
  const bottom = 16;
  const top = 8;
  const plotW = width - left - 4;
  const plotH = height - top - bottom;
  const max = Math.max(1e-9, ...d.series.flatMap(r => r.points.map(p => p.rate)));
  const span = Math.max(1, d.until - d.since);
  const x = (t: number): number => left + ((t + d.bucket_seconds / 2 - d.since) / span) * plotW;
  const y = (v: number): number => top + plotH - (v / max) * plotH;
  const svg = s('svg', {
    class: 'nbmlops-chart nbmlops-ratechart',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': `Requests per minute of ${d.name}, ${windowName(d.minutes)}`
  });
  svg.appendChild(s('line', { x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH, class: 'nbmlops-axis' }));
  svg.appendChild(s('line', { x1: left, y1: top, x2: left, y2: top + plotH, class: 'nbmlops-axis' }));
  svg.appendChild(s('text', { x: left - 4, y: top + 8, 'text-anchor': 'end' }, formatValue(Number(max.toPrecision(3)))));
  svg.appendChild(s('text', { x: left - 4, y: top + plotH, 'text-anchor': 'end' }, '0'));
  svg.appendChild(s('text', { x: left, y: height - 3 }, clock(d.since)));
  svg.appendChild(s('text', { x: left + plotW, y: height - 3, 'text-anchor': 'end' }, clock(d.until)));
  const legend = h('div', { class: 'nbmlops-legend' });
  d.series.forEach((r, i) => {
    const color = PALETTE[i % PALETTE.length];
    const line = s('polyline', {
      class: 'nbmlops-rateline',
      'data-alias': r.alias,
      'data-version': r.version ?? '',
      'data-role': r.role,
      fill: 'none',
      stroke: color,
      'stroke-width': 1.5,
      'stroke-dasharray': r.role === 'shadow' ? '4 2' : null,
      points: r.points.map(p => `${x(p.t).toFixed(1)},${y(p.rate).toFixed(1)}`).join(' ')
    });
    line.appendChild(s('title', {}, `${seriesLabel(r)}: ${r.requests} requests, ${r.rows} rows`));
    svg.appendChild(line);
    legend.appendChild(
      h(
        'span',
        {},
        h('span', { class: 'nbmlops-swatch', style: `background:${color}` }),
        `${seriesLabel(r)}: ${r.requests}`
      )
    );
  });
  return h('div', { class: 'nbmlops-ratechart-box' }, svg, legend);
}

/** A small line of one feature's PSI over the results (the threshold as a dashed line). */
function sparkline(values: (number | null)[], threshold: number | null, drifted: boolean): SVGElement {
  const width = 90;
  const height = 18;
  const finite = values.filter((v): v is number => v !== null && isFinite(v));
  const max = Math.max(1e-9, threshold ?? 0, ...finite);
  const step = values.length > 1 ? (width - 4) / (values.length - 1) : 0;
  const y = (v: number): number => height - 2 - (v / max) * (height - 4);
  const svg = s('svg', {
    class: 'nbmlops-chart nbmlops-sparkline',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    'aria-hidden': 'true'
  });
  if (threshold !== null) {
    svg.appendChild(s('line', { x1: 0, x2: width, y1: y(threshold), y2: y(threshold), class: 'nbmlops-threshold' }));
  }
  const pts: string[] = [];
  values.forEach((v, i) => {
    if (v !== null && isFinite(v)) {
      pts.push(`${(2 + i * step).toFixed(1)},${y(v).toFixed(1)}`);
    }
  });
  svg.appendChild(
    s('polyline', {
      fill: 'none',
      stroke: drifted ? 'var(--jp-error-color1)' : PALETTE[0],
      'stroke-width': 1.5,
      points: pts.length === 1 ? `${pts[0]} ${pts[0]}` : pts.join(' ')
    })
  );
  if (pts.length) {
    const [cx, cy] = pts[pts.length - 1].split(',');
    svg.appendChild(s('circle', { cx, cy, r: 2, fill: drifted ? 'var(--jp-error-color1)' : PALETTE[0] }));
  }
  return svg;
}

/** One row per feature: its PSI over the recorded monitor results, oldest to newest. */
function driftTable(drift: DriftHistory): HTMLElement {
  if (!drift.results.length) {
    return message(
      'No monitor results recorded yet: run `nbmlops monitor NAME@ALIAS` or add a drift ' +
        'trigger (`nbmlops trigger add PIPELINE --on-drift NAME@ALIAS`).'
    );
  }
  const latest = drift.results[drift.results.length - 1];
  const box = h('div', { class: 'nbmlops-drift' });
  box.appendChild(
    h(
      'div',
      { class: 'nbmlops-dim' },
      `${drift.results.length} result${drift.results.length === 1 ? '' : 's'}` +
        `${drift.truncated ? ' (the newest)' : ''}; latest ${formatTime(latest.created_at)}: ` +
        `v${latest.version ?? '?'}${latest.alias ? ` (${latest.alias})` : ''}, ` +
        `${latest.rows ?? 0} rows, score ${latest.score === null ? '–' : formatValue(latest.score)}` +
        `${latest.threshold !== null ? ` / threshold ${formatValue(latest.threshold)}` : ''}`,
      ' ',
      driftChip(latest.score, latest.drifted, latest.created_at)
    )
  );
  const body = h('tbody', {});
  for (const feature of drift.features) {
    const values = drift.results.map(r => (feature in r.features ? r.features[feature] : null));
    const now = latest.features[feature] ?? null;
    const drifted = latest.drifted_features.includes(feature);
    body.appendChild(
      h(
        'tr',
        { class: `nbmlops-driftrow${drifted ? ' nbmlops-drifted' : ''}`, 'data-drifted': drifted ? 'true' : 'false' },
        h('td', { class: 'nbmlops-featurename', title: feature }, feature),
        h('td', {}, sparkline(values, latest.threshold, drifted)),
        h('td', { class: 'nbmlops-num' }, now === null ? '–' : formatValue(now))
      )
    );
  }
  box.appendChild(
    h(
      'table',
      { class: 'nbmlops-table nbmlops-drifttable', 'aria-label': 'Drift per feature' },
      h('thead', {}, h('tr', {}, h('th', {}, 'feature'), h('th', {}, 'PSI over time'), h('th', {}, 'latest'))),
      body
    )
  );
  if (drift.features_truncated) {
    box.appendChild(h('div', { class: 'nbmlops-dim' }, 'Only the features that drifted most are shown.'));
  }
  return box;
}

function fireFacts(f: ScheduleFire): string {
  const r = f.reason as { [key: string]: unknown };
  const bits: string[] = [];
  if (typeof r.version === 'number') {
    bits.push(`v${r.version}`);
  }
  if (typeof r.score === 'number') {
    bits.push(`score ${formatValue(r.score)}`);
  }
  if (r.features && typeof r.features === 'object') {
    const named = Object.entries(r.features as { [k: string]: unknown })
      .filter(([, v]) => typeof v === 'number')
      .sort((a, b) => (b[1] as number) - (a[1] as number))
      .slice(0, 3)
      .map(([k, v]) => `${k} ${formatValue(v)}`);
    if (named.length) {
      bits.push(named.join(', '));
    }
  }
  return bits.join(' · ');
}

function firesList(d: MonitoringDetail): HTMLElement {
  const box = h('div', { class: 'nbmlops-drift-triggers' });
  if (!d.triggers.length) {
    box.appendChild(
      message(
        `No drift trigger watches ${d.name}. Add one with \`nbmlops trigger add PIPELINE ` +
          `--on-drift ${d.name}@champion --threshold 0.2\`.`
      )
    );
    return box;
  }
  for (const t of d.triggers) {
    box.appendChild(
      h(
        'div',
        { class: 'nbmlops-triggerrow', 'data-trigger': t.name },
        h('span', { class: 'nbmlops-modelname' }, t.name),
        ` on ${t.watch ?? ''} → ${t.target_path ?? t.target}`,
        h(
          'span',
          { class: 'nbmlops-dim' },
          ` threshold ${t.threshold === null ? '–' : formatValue(t.threshold)}` +
            `${t.window !== null ? `, window ${t.window}` : ''}${t.paused ? ', paused' : ''}` +
            `${t.episode ? ', drift episode open' : ''}`
        )
      )
    );
  }
  if (!d.fires.length) {
    box.appendChild(message('No fires yet.'));
    return box;
  }
  const list = h('ul', { class: 'nbmlops-fires', 'aria-label': 'Drift trigger fires' });
  for (const f of d.fires) {
    const facts = fireFacts(f);
    list.appendChild(
      h(
        'li',
        { class: 'nbmlops-firerow', 'data-status': f.status, 'data-fire': f.id },
        h('span', {}, formatTime(f.created_at)),
        ` ${f.schedule} `,
        h('span', { class: `nbmlops-chip nbmlops-fire-${f.status}` }, f.status),
        f.run_id ? h('span', { class: 'nbmlops-dim', title: f.run_id }, ` run ${f.run_id.slice(0, 8)}`) : null,
        facts ? h('div', { class: 'nbmlops-dim' }, facts) : null
      )
    );
  }
  box.appendChild(list);
  return box;
}
