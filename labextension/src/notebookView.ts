/**
 * "This notebook": the active notebook's newest run, one row per cell execution, updated live.
 *
 * Polls `notebook-run` every second while the kernel is busy or cells ran in the last seconds,
 * every few seconds otherwise, and not at all while the panel is hidden. Only new cells travel
 * (`since_seq`); stale marks for every row come with them.
 */
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { StoreGate, requestAPI } from './api';
import { IPanelContext } from './context';
import {
  basename,
  clear,
  firstLine,
  formatDuration,
  formatTime,
  formatValue,
  h,
  message,
  shortClass
} from './dom';
import { viewPoll } from './polling';
import { Cell, CellMarks, NotebookRun, RunSummary, Validation } from './types';

const ACTIVE_MS = 15000; // poll fast this long after the last sign of execution
const IDLE_EVERY_MS = 5000;

export class NotebookView extends Widget {
  constructor(private ctx: IPanelContext) {
    super();
    this.addClass('nbmlops-notebook-view');
    this.title.label = 'This notebook';
    this.node.appendChild(this.header);
    this.node.appendChild(this.banner);
    this.node.appendChild(this.list);
    this.list.setAttribute('role', 'table');
    this.list.setAttribute('aria-label', 'Cell executions of this notebook');
    this.poll = viewPoll(this, 'notebook', 1000, () => this.tick(), true);
    ctx.notebookChanged.connect(() => {
      if (this.ctx.currentPath() !== this.path) {
        void this.poll.refresh();
      }
    });
    this.render();
  }

  dispose(): void {
    this.poll.dispose();
    super.dispose();
  }

  /** Fetch now (used when the panel is shown). */
  refresh(): void {
    this.lastFetch = 0;
    void this.poll.refresh();
  }

  protected onAfterShow(): void {
    this.refresh();
  }

  private async tick(): Promise<void> {
    const path = this.ctx.currentPath();
    if (path !== this.path) {
      this.path = path;
      this.reset();
      this.lastFetch = 0;
      this.render();
    }
    if (!path) {
      return;
    }
    const now = Date.now();
    const active = this.ctx.kernelBusy() || now - this.ctx.lastActivity() < ACTIVE_MS;
    if (!active && now - this.lastFetch < IDLE_EVERY_MS) {
      return;
    }
    this.lastFetch = now;
    try {
      const problem = await this.gate.check(path);
      if (problem !== null) {
        this.showError(problem);
        return;
      }
      const got = await requestAPI<NotebookRun>('notebook-run', {
        path,
        run_id: this.run?.id,
        since_seq: this.run ? this.lastSeq : undefined
      });
      if (path !== this.path) {
        return; // the user switched notebooks meanwhile
      }
      const hadError = this.error !== null;
      this.error = null;
      this.apply(got, hadError);
    } catch (error) {
      this.showError(this.gate.note(error));
    }
  }

  private showError(text: string): void {
    if (text !== this.error) {
      this.error = text;
      this.render();
    }
  }

  private reset(): void {
    this.run = null;
    this.cells = [];
    this.marks = {};
    this.lastSeq = -1;
    this.loaded = false;
  }

  private apply(got: NotebookRun, force: boolean): void {
    let changed = force || !this.loaded;
    this.loaded = true;
    if (got.new_run || !got.run) {
      this.reset();
      this.loaded = true;
      this.run = got.run;
      changed = true;
    } else if (got.run && this.run && got.run.status !== this.run.status) {
      this.run = got.run;
      changed = true;
    }
    if (got.cells.length) {
      const known = new Set(this.cells.map(c => c.seq));
      this.cells.push(...got.cells.filter(c => !known.has(c.seq)));
      changed = true;
    }
    if (got.marks) {
      this.marks = got.marks;
      changed = true;
    }
    this.lastSeq = got.last_seq;
    if (changed) {
      this.render();
    }
  }

  private render(): void {
    clear(this.header);
    clear(this.banner);
    clear(this.list);
    if (this.error) {
      this.banner.appendChild(message(this.error, 'error'));
    }
    if (!this.path) {
      this.list.appendChild(
        message('Open a notebook: its cell executions show here as they run.')
      );
      return;
    }
    this.header.appendChild(h('div', { class: 'nbmlops-nb-path', title: this.path }, this.path));
    if (!this.loaded) {
      if (!this.error) {
        this.list.appendChild(message('Loading…'));
      }
      return;
    }
    if (!this.run) {
      this.list.appendChild(
        message(
          'No run of this notebook yet. Run `%load_ext nbmlops` in it: every cell you execute ' +
            'then shows here.'
        )
      );
      return;
    }
    this.header.appendChild(runLine(this.run, this.cells.length));
    if (!this.cells.length) {
      this.list.appendChild(message('The run has no cell executions yet.'));
      return;
    }
    for (const cell of this.cells) {
      this.list.appendChild(this.row(cell, this.marks[String(cell.seq)] ?? cell));
    }
  }

  private row(cell: Cell, marks: CellMarks): HTMLElement {
    const stale = marks.stale.length > 0;
    const classes = ['nbmlops-cellrow'];
    if (cell.status !== 'ok') {
      classes.push('nbmlops-mod-error');
    }
    if (stale) {
      classes.push('nbmlops-mod-stale');
    }
    if (marks.superseded_by !== null) {
      classes.push('nbmlops-mod-superseded');
    }
    const chips = h('div', { class: 'nbmlops-chips' });
    for (const [k, v] of Object.entries(cell.params)) {
      chips.appendChild(chip('param', `${k}=${v}`, `param ${k} = ${v}`));
    }
    for (const m of cell.metrics) {
      chips.appendChild(chip('metric', `${m.key}=${formatValue(m.value)}`, `metric ${m.key}`));
    }
    for (const a of cell.reads) {
      chips.appendChild(
        chip('read', `⬇ ${basename(a.path ?? a.uri)}`, `read ${a.path ?? a.uri}`, () =>
          this.ctx.showLineage(`artifact:${a.id}`)
        )
      );
    }
    for (const a of cell.writes) {
      chips.appendChild(
        chip('wrote', `⬆ ${basename(a.path ?? a.uri)}`, `wrote ${a.path ?? a.uri}`, () =>
          this.ctx.showLineage(`artifact:${a.id}`)
        )
      );
    }
    for (const m of cell.models) {
      chips.appendChild(
        chip('model', `${shortClass(m.class_name)} (${m.variable})`, `fitted ${m.class_name}`)
      );
    }
    const details: HTMLElement[] = [];
    for (const v of cell.validations ?? []) {
      const open = this.expanded.has(v.id);
      const text = v.passed
        ? '✓ valid'
        : `✗ ${v.violation_count} violation${v.violation_count === 1 ? '' : 's'}`;
      const c = chip(
        v.passed ? 'valid' : 'invalid',
        text,
        `Validated ${v.data_label} against ${v.reference_label}: ` +
          (v.passed ? 'passed' : `${v.violation_count} failed checks`) +
          (v.rows !== null ? ` (${v.rows} rows)` : '') +
          '. Click for details.',
        () => {
          if (this.expanded.has(v.id)) {
            this.expanded.delete(v.id);
          } else {
            this.expanded.add(v.id);
          }
          this.render();
        }
      );
      c.setAttribute('role', 'button');
      c.setAttribute('aria-expanded', String(open));
      c.dataset.validation = String(v.id);
      chips.appendChild(c);
      if (open) {
        details.push(validationDetails(v));
      }
    }
    if (stale) {
      const why = marks.stale.map(staleText).join('\n');
      chips.appendChild(chip('stale', 'stale', `Inputs changed since this cell ran:\n${why}`));
    }
    if (cell.status !== 'ok') {
      chips.appendChild(
        chip('error', cell.error_name ?? 'error', `${cell.error_name}: ${cell.error_value}`)
      );
    }
    const count = cell.execution_count === null ? ' ' : String(cell.execution_count);
    const row = h(
      'div',
      {
        class: classes.join(' '),
        role: 'row',
        tabindex: 0,
        'data-seq': cell.seq,
        'data-cell-id': cell.cell_id ?? '',
        title: marks.superseded_by !== null ? 'This cell was executed again later' : null,
        onClick: () => this.select(cell, row),
        onKeydown: (e: KeyboardEvent) => {
          if (e.key === 'Enter') {
            this.select(cell, row);
          }
        }
      },
      h('span', { class: 'nbmlops-count', role: 'cell' }, `[${count}]`),
      h(
        'span',
        { class: `nbmlops-status nbmlops-status-${cell.status}`, role: 'cell' },
        cell.status === 'ok' ? '✓' : '✗'
      ),
      h('code', { class: 'nbmlops-source', role: 'cell', title: firstLine(cell.source, 400) },
        firstLine(cell.source)),
      h('span', { class: 'nbmlops-duration', role: 'cell' }, formatDuration(cell.duration)),
      variables(cell),
      chips,
      ...details
    );
    return row;
  }

  private select(cell: Cell, row: HTMLElement): void {
    for (const el of Array.from(this.list.querySelectorAll('.jp-mod-selected'))) {
      el.classList.remove('jp-mod-selected');
    }
    row.classList.add('jp-mod-selected');
    if (!cell.cell_id || !this.ctx.jumpToCell(cell.cell_id)) {
      clear(this.banner);
      this.banner.appendChild(
        message('That cell is no longer in the notebook (deleted, or the notebook changed).')
      );
    }
  }

  private poll: Poll;
  /** validations whose details are shown (by id; kept across re-renders) */
  private expanded = new Set<number>();
  private gate = new StoreGate();
  private path: string | null = null;
  private run: RunSummary | null = null;
  private cells: Cell[] = [];
  private marks: { [seq: string]: CellMarks } = {};
  private lastSeq = -1;
  private loaded = false;
  private lastFetch = 0;
  private error: string | null = null;
  private header = h('div', { class: 'nbmlops-nb-header' });
  private banner = h('div', { class: 'nbmlops-banner' });
  private list = h('div', { class: 'nbmlops-cells' });
}

function runLine(run: RunSummary, n: number): HTMLElement {
  return h(
    'div',
    { class: 'nbmlops-runline' },
    h('span', { class: `nbmlops-badge nbmlops-run-${run.status}` }, run.status),
    h('span', { class: 'nbmlops-runname' }, run.name),
    h('span', { class: 'nbmlops-dim', title: run.id }, run.id.slice(0, 8)),
    h('span', { class: 'nbmlops-dim' }, `started ${formatTime(run.start_time)}`),
    h('span', { class: 'nbmlops-dim' }, `${n} cell executions`)
  );
}

const MAX_VARS = 12;

/** What a validation checked and, when it failed, each failed check (all as text). */
function validationDetails(v: Validation): HTMLElement {
  const box = h(
    'div',
    {
      class: `nbmlops-validation ${v.passed ? 'nbmlops-mod-passed' : 'nbmlops-mod-failed'}`,
      role: 'cell',
      'data-validation': v.id,
      onClick: (e: MouseEvent) => e.stopPropagation() // reading details is not "go to cell"
    },
    h(
      'div',
      { class: 'nbmlops-validation-head' },
      v.passed ? 'Passed: ' : 'Failed: ',
      h('code', {}, v.data_label),
      ' against ',
      h('code', {}, v.reference_label),
      v.rows !== null ? ` (${v.rows} rows)` : ''
    )
  );
  if (v.violations.length) {
    const list = h('ul', { class: 'nbmlops-violations', 'aria-label': 'Violations' });
    for (const x of v.violations) {
      list.appendChild(
        h(
          'li',
          {},
          x.column !== null ? h('code', {}, x.column) : h('em', {}, 'table'),
          ` ${x.check}: expected `,
          h('span', { class: 'nbmlops-expected' }, formatValue(x.expected)),
          ', observed ',
          h('span', { class: 'nbmlops-observed' }, formatValue(x.observed))
        )
      );
    }
    box.appendChild(list);
    if (v.violation_count > v.violations.length) {
      box.appendChild(
        h(
          'div',
          { class: 'nbmlops-dim' },
          `…and ${v.violation_count - v.violations.length} more (nbmlops validate lists them all)`
        )
      );
    }
  }
  return box;
}

/** "defines a, b · uses x, y" under a cell's first line (nothing when it has neither). */
function variables(cell: Cell): HTMLElement | null {
  if (!cell.vars_defined.length && !cell.vars_used.length) {
    return null;
  }
  const group = (kind: 'defines' | 'uses', names: string[]): HTMLElement | null => {
    if (!names.length) {
      return null;
    }
    const shown = names.slice(0, MAX_VARS);
    const el = h(
      'span',
      {
        class: `nbmlops-vars-group nbmlops-vars-${kind}`,
        title: `${kind === 'defines' ? 'Defines' : 'Uses'}: ${names.join(', ')}`
      },
      h('span', { class: 'nbmlops-vars-label' }, kind)
    );
    // each name a token that wraps as a whole (and inside itself only when longer than a line)
    shown.forEach((name, i) => {
      const last = i === shown.length - 1 && names.length === shown.length;
      el.appendChild(document.createTextNode(' '));
      el.appendChild(h('span', { class: 'nbmlops-var' }, h('code', {}, name), last ? '' : ','));
    });
    if (names.length > shown.length) {
      el.appendChild(document.createTextNode(' '));
      el.appendChild(
        h('span', { class: 'nbmlops-var' }, `+${names.length - shown.length} more`)
      );
    }
    return el;
  };
  return h(
    'div',
    { class: 'nbmlops-vars', role: 'cell', 'aria-label': 'Variables' },
    group('defines', cell.vars_defined),
    group('uses', cell.vars_used)
  );
}

function chip(kind: string, text: string, title: string, onClick?: () => void): HTMLElement {
  return h(
    'span',
    {
      class: `nbmlops-chip nbmlops-chip-${kind}${onClick ? ' nbmlops-clickable' : ''}`,
      title,
      onClick: onClick
        ? (e: MouseEvent) => {
            e.stopPropagation();
            onClick();
          }
        : undefined
    },
    text
  );
}

function staleText(r: { kind: string; how: string; name: string | null; path: string | null; uri: string | null; by_execution_count: number | null }): string {
  const by = r.by_execution_count !== null ? ` by [${r.by_execution_count}]` : '';
  return r.kind === 'variable'
    ? `variable ${r.name} ${r.how}${by}`
    : `file ${r.path ?? r.uri} ${r.how}${by}`;
}
