/**
 * "Runs": a sortable, filterable, paged table of runs; select two or more to compare them
 * (params that differ highlighted, metrics as an SVG bar chart); click a run for its details.
 */
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { StoreGate, requestAPI, segment } from './api';
import { IPanelContext } from './context';
import { clear, formatDuration, formatTime, formatValue, h, message, s, showBanner } from './dom';
import { viewPoll } from './polling';
import { Comparison, RunDetail, RunPage, RunSummary } from './types';

const PAGE = 50;
const COLUMNS: { key: string; label: string; sort?: string }[] = [
  { key: 'select', label: '' },
  { key: 'name', label: 'Run', sort: 'name' },
  { key: 'status', label: 'Status', sort: 'status' },
  { key: 'notebook', label: 'Notebook', sort: 'notebook' },
  { key: 'start_time', label: 'Started', sort: 'start_time' },
  { key: 'duration', label: 'Duration', sort: 'end_time' },
  { key: 'cells', label: 'Cells' }
];
const STATUSES = ['', 'running', 'finished', 'failed', 'cancelled', 'abandoned'];

export class RunsView extends Widget {
  constructor(private ctx: IPanelContext) {
    super();
    this.addClass('nbmlops-runs-view');
    this.title.label = 'Runs';
    this.search = h('input', {
      type: 'search',
      class: 'jp-mod-styled nbmlops-input',
      placeholder: 'Search name or notebook',
      'aria-label': 'Search runs',
      onInput: () => this.changed()
    });
    this.experiment = h('input', {
      type: 'text',
      class: 'jp-mod-styled nbmlops-input',
      placeholder: 'Experiment',
      'aria-label': 'Experiment',
      onInput: () => this.changed()
    });
    this.status = h(
      'select',
      { class: 'jp-mod-styled', 'aria-label': 'Status', onChange: () => this.changed() },
      ...STATUSES.map(st => h('option', { value: st }, st || 'any status'))
    );
    this.compareButton = h(
      'button',
      {
        class: 'jp-mod-styled jp-mod-accept nbmlops-button',
        disabled: true,
        onClick: () => void this.compare()
      },
      'Compare'
    );
    const refresh = h(
      'button',
      { class: 'jp-mod-styled nbmlops-button', title: 'Refresh', onClick: () => this.load() },
      'Refresh'
    );
    this.node.appendChild(
      h('div', { class: 'nbmlops-toolbar' }, this.search, this.experiment, this.status, refresh)
    );
    this.node.appendChild(this.banner);
    this.node.appendChild(this.table);
    this.node.appendChild(this.pager);
    this.node.appendChild(h('div', { class: 'nbmlops-toolbar' }, this.compareButton));
    this.node.appendChild(this.details);
    this.poll = viewPoll(this, 'runs', 5000, () => this.fetch());
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

  private changed(): void {
    window.clearTimeout(this.debounce);
    this.debounce = window.setTimeout(() => {
      this.offset = 0;
      this.load();
    }, 250);
  }

  private async fetch(): Promise<void> {
    try {
      const problem = await this.gate.check(this.ctx.currentPath());
      if (problem !== null) {
        this.showError(problem);
        return;
      }
      const page = await requestAPI<RunPage>('runs', {
        path: this.ctx.currentPath(),
        search: this.search.value,
        experiment: this.experiment.value,
        status: this.status.value,
        sort: this.sort,
        order: this.descending ? 'desc' : 'asc',
        limit: PAGE,
        offset: this.offset
      });
      this.showError(null);
      this.page = page;
      this.renderTable();
    } catch (error) {
      this.showError(error);
    }
  }

  private showError(error: unknown): void {
    showBanner(this.banner, !error ? null : typeof error === 'string' ? error : this.gate.note(error));
  }

  private renderTable(): void {
    const page = this.page;
    clear(this.table);
    clear(this.pager);
    if (!page) {
      return;
    }
    const head = h('tr', {});
    for (const col of COLUMNS) {
      const sorted = col.sort === this.sort;
      const arrow = sorted ? (this.descending ? ' ▼' : ' ▲') : '';
      head.appendChild(
        h(
          'th',
          {
            scope: 'col',
            class: col.sort ? 'nbmlops-sortable' : null,
            'aria-sort': sorted ? (this.descending ? 'descending' : 'ascending') : null,
            onClick: col.sort ? () => this.sortBy(col.sort as string) : undefined
          },
          col.label + arrow
        )
      );
    }
    const body = h('tbody', {});
    for (const run of page.runs) {
      body.appendChild(this.runRow(run));
    }
    this.table.appendChild(h('thead', {}, head));
    this.table.appendChild(body);
    if (!page.runs.length) {
      this.pager.appendChild(message('No runs match.'));
      return;
    }
    const last = Math.min(page.offset + page.runs.length, page.total);
    this.pager.appendChild(
      h(
        'button',
        {
          class: 'jp-mod-styled nbmlops-button',
          disabled: page.offset === 0,
          onClick: () => this.goto(Math.max(0, page.offset - PAGE))
        },
        '‹ Newer'
      )
    );
    this.pager.appendChild(
      h('span', { class: 'nbmlops-dim' }, `${page.offset + 1}–${last} of ${page.total}`)
    );
    this.pager.appendChild(
      h(
        'button',
        {
          class: 'jp-mod-styled nbmlops-button',
          disabled: last >= page.total,
          onClick: () => this.goto(page.offset + PAGE)
        },
        'Older ›'
      )
    );
  }

  private runRow(run: RunSummary): HTMLElement {
    const box = h('input', {
      type: 'checkbox',
      'aria-label': `Select run ${run.name}`,
      checked: this.selected.has(run.id),
      onClick: (e: MouseEvent) => e.stopPropagation(),
      onChange: () => {
        if (box.checked) {
          this.selected.set(run.id, run);
        } else {
          this.selected.delete(run.id);
        }
        this.updateCompare();
      }
    });
    return h(
      'tr',
      {
        class: `nbmlops-runrow${this.shown === run.id ? ' jp-mod-selected' : ''}`,
        'data-run-id': run.id,
        onClick: () => void this.showRun(run.id)
      },
      h('td', {}, box),
      h('td', { title: run.id }, run.name),
      h('td', {}, h('span', { class: `nbmlops-badge nbmlops-run-${run.status}` }, run.status)),
      h('td', { title: run.notebook_path ?? '' }, run.notebook ?? run.notebook_path ?? ''),
      h('td', {}, formatTime(run.start_time)),
      h('td', {}, formatDuration(run.duration)),
      h('td', {}, run.cell_count ?? '')
    );
  }

  private sortBy(key: string): void {
    if (this.sort === key) {
      this.descending = !this.descending;
    } else {
      this.sort = key;
      this.descending = key === 'start_time' || key === 'end_time';
    }
    this.offset = 0;
    this.load();
  }

  private goto(offset: number): void {
    this.offset = offset;
    this.load();
  }

  private updateCompare(): void {
    const n = this.selected.size;
    this.compareButton.disabled = n < 2;
    this.compareButton.textContent = n >= 2 ? `Compare ${n} runs` : 'Compare';
  }

  private async showRun(id: string): Promise<void> {
    this.shown = id;
    this.renderTable();
    try {
      const run = await requestAPI<RunDetail>(`runs/${segment(id)}`, {
        path: this.ctx.currentPath()
      });
      clear(this.details);
      this.details.appendChild(runDetails(run));
    } catch (error) {
      this.showError(error);
    }
  }

  private async compare(): Promise<void> {
    const ids = Array.from(this.selected.keys());
    try {
      const cmp = await requestAPI<Comparison>('compare', {
        path: this.ctx.currentPath(),
        ids: ids.join(',')
      });
      clear(this.details);
      this.details.appendChild(comparison(cmp));
    } catch (error) {
      this.showError(error);
    }
  }

  private poll: Poll;
  private gate = new StoreGate();
  private page: RunPage | null = null;
  private sort = 'start_time';
  private descending = true;
  private offset = 0;
  private debounce = 0;
  private shown: string | null = null;
  private selected = new Map<string, RunSummary>();
  private search: HTMLInputElement;
  private experiment: HTMLInputElement;
  private status: HTMLSelectElement;
  private compareButton: HTMLButtonElement;
  private banner = h('div', { class: 'nbmlops-banner' });
  private table = h('table', { class: 'nbmlops-table', 'aria-label': 'Runs' });
  private pager = h('div', { class: 'nbmlops-pager' });
  private details = h('div', { class: 'nbmlops-details' });
}

function kvTable(title: string, entries: [string, unknown][]): HTMLElement {
  const body = h('tbody', {});
  for (const [k, v] of entries) {
    body.appendChild(h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, formatValue(v))));
  }
  return h(
    'section',
    {},
    h('h3', {}, title),
    entries.length ? h('table', { class: 'nbmlops-table nbmlops-kv' }, body) : message('none')
  );
}

function runDetails(run: RunDetail): HTMLElement {
  const env = run.environment ?? {};
  return h(
    'div',
    { class: 'nbmlops-run-details' },
    h('h2', {}, run.name),
    h('div', { class: 'nbmlops-dim' }, `${run.id} · ${run.experiment} · ${run.source}`),
    kvTable('Params', Object.entries(run.params)),
    kvTable('Metrics', Object.entries(run.metrics)),
    kvTable('Tags', Object.entries(run.tags)),
    kvTable('Environment', [
      ['python', env['python']],
      ['platform', env['platform']],
      ['git commit', run.git_commit],
      ['git dirty', run.git_dirty],
      ['notebook', run.notebook_path]
    ])
  );
}

function comparison(cmp: Comparison): HTMLElement {
  const head = h('tr', {}, h('th', { scope: 'col' }, 'param'));
  for (const r of cmp.runs) {
    head.appendChild(h('th', { scope: 'col', title: r.id }, `${r.name} ${r.id.slice(0, 6)}`));
  }
  const body = h('tbody', {});
  const differ = new Set(cmp.params_differ);
  for (const [key, values] of Object.entries(cmp.params)) {
    const row = h(
      'tr',
      { class: differ.has(key) ? 'nbmlops-diff' : null, 'data-param': key },
      h('th', { scope: 'row' }, key)
    );
    for (const v of values) {
      row.appendChild(h('td', {}, formatValue(v)));
    }
    body.appendChild(row);
  }
  return h(
    'div',
    { class: 'nbmlops-compare' },
    h('h2', {}, `Comparing ${cmp.runs.length} runs`),
    h('h3', {}, 'Params (differences highlighted)'),
    Object.keys(cmp.params).length
      ? h('table', { class: 'nbmlops-table' }, h('thead', {}, head), body)
      : message('No params.'),
    h('h3', {}, 'Metrics'),
    Object.keys(cmp.metrics).length ? metricChart(cmp) : message('No metrics.')
  );
}

export const PALETTE = [
  'var(--jp-brand-color1)',
  'var(--jp-warn-color1)',
  'var(--jp-success-color1)',
  'var(--jp-error-color1)',
  'var(--jp-info-color1)',
  'var(--jp-brand-color3)'
];

/** One group of bars per metric, one bar per run, each group scaled to its own maximum. */
function metricChart(cmp: Comparison): Element {
  const keys = Object.keys(cmp.metrics);
  const n = cmp.runs.length;
  const bar = 14;
  const gap = 4;
  const labelW = 110;
  const chartW = 200;
  const groupH = n * (bar + gap) + 12;
  const height = keys.length * groupH + 24;
  const svg = s('svg', {
    class: 'nbmlops-chart',
    width: labelW + chartW + 70,
    height,
    viewBox: `0 0 ${labelW + chartW + 70} ${height}`,
    role: 'img',
    'aria-label': 'Metric values of the compared runs'
  });
  keys.forEach((key, gi) => {
    const values = cmp.metrics[key];
    const finite = values.filter((v): v is number => v !== null && isFinite(v));
    const max = Math.max(...finite.map(Math.abs), 1e-12);
    const y0 = gi * groupH + 4;
    svg.appendChild(s('text', { x: 0, y: y0 + bar - 2, class: 'nbmlops-chart-label' }, key));
    values.forEach((v, ri) => {
      const y = y0 + ri * (bar + gap);
      const w = v === null ? 0 : Math.max(1, (Math.abs(v) / max) * chartW);
      const rect = s('rect', {
        x: labelW,
        y,
        width: w,
        height: bar,
        fill: PALETTE[ri % PALETTE.length]
      });
      rect.appendChild(s('title', {}, `${cmp.runs[ri].name} ${cmp.runs[ri].id.slice(0, 6)}: ${formatValue(v)}`));
      svg.appendChild(rect);
      svg.appendChild(
        s('text', { x: labelW + w + 4, y: y + bar - 3, class: 'nbmlops-chart-value' }, formatValue(v))
      );
    });
  });
  const legend = h('div', { class: 'nbmlops-legend' });
  cmp.runs.forEach((r, i) => {
    legend.appendChild(
      h(
        'span',
        {},
        h('span', { class: 'nbmlops-swatch', style: `background:${PALETTE[i % PALETTE.length]}` }),
        `${r.name} ${r.id.slice(0, 6)}`
      )
    );
  });
  return h('div', {}, svg, legend);
}
