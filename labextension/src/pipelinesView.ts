/**
 * "Pipelines": the pipeline definitions under the Jupyter root with their latest run. Select one
 * for its DAG (levels left to right, nodes coloured by step state), a form of its parameters and
 * a Run button; the selected or started run shows live per-step status (polled every second
 * until it is done) with a Cancel button, and clicking a step lists its run's cells.
 */
import { Widget } from '@lumino/widgets';

import { NbmlopsApiError, StoreGate, postAPI, requestAPI, segment } from './api';
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
  s,
  showBanner
} from './dom';
import {
  CancelAnswer,
  Cell,
  CellPage,
  PipelineInfo,
  PipelineLaunch,
  PipelineList,
  PipelineRunStatus,
  PipelineStep,
  PipelineStepStatus
} from './types';

const POLL_MS = 1000;
const NODE_W = 124;
const NODE_H = 30;
const GAP_X = 34;
const GAP_Y = 10;
const PAD = 6;

export class PipelinesView extends Widget {
  constructor(private ctx: IPanelContext) {
    super();
    this.addClass('nbmlops-pipelines-view');
    this.title.label = 'Pipelines';
    const refresh = h(
      'button',
      {
        class: 'jp-mod-styled nbmlops-button',
        title: 'Look for pipeline definitions again',
        onClick: () => void this.loadList()
      },
      'Refresh'
    );
    this.node.appendChild(
      h('div', { class: 'nbmlops-toolbar' }, h('span', { class: 'nbmlops-dim' }, 'pipeline.yaml files and tagged notebooks under the Jupyter root'), refresh)
    );
    this.node.appendChild(this.banner);
    this.node.appendChild(this.table);
    this.node.appendChild(this.detail);
  }

  dispose(): void {
    window.clearTimeout(this.timer);
    super.dispose();
  }

  protected onAfterShow(): void {
    void this.loadList();
    if (this.status && !this.status.done) {
      this.schedule(0);
    }
  }

  // -- the list --------------------------------------------------------------------------------

  private async loadList(): Promise<void> {
    try {
      const problem = await this.gate.check(null);
      if (problem !== null) {
        this.showError(problem);
        return;
      }
      const got = await requestAPI<PipelineList>('pipelines');
      this.showError(null);
      this.pipelines = got.pipelines;
      if (got.store_message) {
        this.banner.appendChild(message(got.store_message, 'error'));
      }
      if (got.truncated) {
        this.banner.appendChild(
          message('Not every directory was searched (too many files): open a pipeline from a shallower directory.')
        );
      }
      this.renderList();
      const selected = this.pipelines.find(p => p.path === this.selected?.path) ?? null;
      if (selected && this.selected && signature(selected) !== signature(this.selected)) {
        this.selected = selected;
        this.renderDefinition();
      } else if (selected) {
        this.selected = selected;
      }
    } catch (error) {
      this.showError(error);
    }
  }

  private showError(error: unknown): void {
    showBanner(this.banner, !error ? null : typeof error === 'string' ? error : this.gate.note(error));
  }

  private renderList(): void {
    clear(this.table);
    if (!this.pipelines.length) {
      this.table.appendChild(
        h(
          'caption',
          {},
          message(
            'No pipelines yet. Write a pipeline.yaml (see docs/pipeline-yaml.md), or tag the cells of one notebook step:NAME and run it once with `nbmlops pipeline run`.'
          )
        )
      );
      return;
    }
    const head = h(
      'tr',
      {},
      h('th', { scope: 'col' }, 'Pipeline'),
      h('th', { scope: 'col' }, 'Steps'),
      h('th', { scope: 'col' }, 'Last run'),
      h('th', { scope: 'col' }, 'Started')
    );
    const body = h('tbody', {});
    for (const p of this.pipelines) {
      const last = p.latest_run;
      body.appendChild(
        h(
          'tr',
          {
            class: `nbmlops-pipelinerow${this.selected?.path === p.path ? ' jp-mod-selected' : ''}`,
            'data-path': p.path,
            tabindex: 0,
            onClick: () => this.select(p),
            onKeydown: (e: KeyboardEvent) => {
              if (e.key === 'Enter') {
                this.select(p);
              }
            }
          },
          h(
            'td',
            { title: p.path },
            h('div', { class: 'nbmlops-runname' }, p.name),
            h('div', { class: 'nbmlops-dim' }, p.path)
          ),
          h(
            'td',
            {},
            p.ok
              ? String(p.steps.length)
              : h('span', { class: 'nbmlops-badge nbmlops-run-failed', title: p.error ?? '' }, 'invalid')
          ),
          h(
            'td',
            {},
            last ? h('span', { class: `nbmlops-badge nbmlops-run-${last.status}` }, last.status) : '–'
          ),
          h('td', {}, last ? formatTime(last.start_time) : '')
        )
      );
    }
    this.table.appendChild(h('thead', {}, head));
    this.table.appendChild(body);
  }

  private select(p: PipelineInfo): void {
    this.selected = p;
    this.generation += 1;
    window.clearTimeout(this.timer);
    this.status = null;
    this.awaiting = false;
    this.shownStep = null;
    this.runId = p.latest_run?.id ?? null;
    this.renderList();
    this.renderDefinition();
    if (this.runId) {
      this.schedule(0);
    }
  }

  // -- one pipeline ----------------------------------------------------------------------------

  private renderDefinition(): void {
    clear(this.detail);
    const p = this.selected;
    if (!p) {
      return;
    }
    this.detail.appendChild(
      h(
        'div',
        { class: 'nbmlops-pipeline-head' },
        h('h2', {}, p.name),
        h('span', { class: 'nbmlops-dim' }, p.path)
      )
    );
    if (!p.ok) {
      this.detail.appendChild(message(p.error ?? 'This definition does not load.', 'error'));
    }
    this.detail.appendChild(this.dag);
    this.detail.appendChild(this.form);
    this.detail.appendChild(this.runBox);
    this.detail.appendChild(this.cells);
    clear(this.cells);
    this.renderForm();
    this.renderRun();
  }

  private renderForm(): void {
    clear(this.form);
    const p = this.selected;
    if (!p || !p.ok) {
      return;
    }
    const values = this.values(p);
    const grid = h('div', { class: 'nbmlops-params' });
    for (const param of p.params) {
      const id = `nbmlops-param-${this.id}-${param.name}`;
      const hint = [
        param.help,
        param.type ? `type: ${param.type}` : '',
        param.steps.length ? `steps: ${param.steps.join(', ')}` : 'no step takes it',
        param.source === 'pipeline' ? 'pipeline parameter' : 'declared by the step notebooks'
      ]
        .filter(Boolean)
        .join('\n');
      const input = h('input', {
        id,
        type: 'text',
        class: 'jp-mod-styled nbmlops-input',
        'data-param': param.name,
        placeholder: param.type ?? '',
        title: hint,
        onInput: () => {
          values.set(param.name, input.value);
          input.classList.toggle('nbmlops-mod-changed', input.value !== param.default);
        }
      });
      input.value = values.get(param.name) ?? param.default;
      input.classList.toggle('nbmlops-mod-changed', input.value !== param.default);
      grid.appendChild(h('label', { for: id, title: hint }, param.name));
      grid.appendChild(input);
    }
    if (p.params.length) {
      this.form.appendChild(h('h3', {}, 'Parameters'));
      this.form.appendChild(grid);
    } else {
      this.form.appendChild(message('This pipeline takes no parameters.'));
    }
    this.runButton = h(
      'button',
      { class: 'jp-mod-styled jp-mod-accept nbmlops-button', onClick: () => void this.start() },
      'Run'
    );
    this.cancelButton = h(
      'button',
      { class: 'jp-mod-styled jp-mod-warn nbmlops-button', onClick: () => void this.cancel() },
      'Cancel'
    );
    const defaults = h(
      'button',
      {
        class: 'jp-mod-styled nbmlops-button',
        title: 'Put every parameter back to its default',
        onClick: () => {
          values.clear();
          this.renderForm();
        }
      },
      'Defaults'
    );
    this.form.appendChild(
      h('div', { class: 'nbmlops-toolbar' }, this.runButton, this.cancelButton, p.params.length ? defaults : null)
    );
    this.updateButtons();
  }

  /** The form's values of pipeline `p` (kept while the panel lives, across refreshes). */
  private values(p: PipelineInfo): Map<string, string> {
    let v = this.edits.get(p.path);
    if (!v) {
      v = new Map();
      this.edits.set(p.path, v);
    }
    return v;
  }

  private updateButtons(): void {
    // only a run this server started blocks Run: one started elsewhere may be long dead
    // (killed without ending its run), and the store cannot tell
    const running =
      this.awaiting ||
      (this.status !== null && !this.status.done && this.status.launcher !== null);
    if (this.runButton) {
      this.runButton.disabled = !this.selected?.ok || running || this.starting;
      this.runButton.textContent = running ? 'Running…' : 'Run';
    }
    if (this.cancelButton) {
      const canCancel = running && this.status?.launcher?.running === true;
      this.cancelButton.style.display = canCancel ? '' : 'none';
      this.cancelButton.disabled = this.status?.launcher?.cancel_requested === true;
      this.cancelButton.textContent = this.status?.launcher?.cancel_requested ? 'Cancelling…' : 'Cancel';
    }
  }

  private async start(): Promise<void> {
    const p = this.selected;
    if (!p) {
      return;
    }
    const params: { [name: string]: string } = {};
    const values = this.values(p);
    for (const param of p.params) {
      const v = values.get(param.name);
      if (v !== undefined && v !== param.default) {
        params[param.name] = v;
      }
    }
    this.starting = true;
    this.updateButtons();
    clear(this.banner);
    const generation = ++this.generation;
    try {
      const launch = await postAPI<PipelineLaunch>('pipelines/run', { path: p.path, params });
      if (generation !== this.generation) {
        return;
      }
      window.clearTimeout(this.timer);
      this.runId = launch.run_id;
      this.status = null;
      this.awaiting = true;
      this.shownStep = null;
      clear(this.cells);
      this.renderRun(`Starting ${launch.pipeline}…`);
      this.schedule(0);
    } catch (error) {
      const text = error instanceof NbmlopsApiError ? error.message : String(error);
      clear(this.runBox);
      this.runBox.appendChild(message(text, 'error'));
    } finally {
      this.starting = false;
      this.updateButtons();
    }
  }

  private async cancel(): Promise<void> {
    if (!this.runId) {
      return;
    }
    try {
      await postAPI<CancelAnswer>(`pipeline-runs/${segment(this.runId)}/cancel`);
      if (this.status?.launcher) {
        this.status.launcher.cancel_requested = true;
      }
      this.updateButtons();
      this.schedule(0);
    } catch (error) {
      const text = error instanceof NbmlopsApiError ? error.message : String(error);
      this.runBox.appendChild(message(text, 'error'));
    }
  }

  // -- the run ---------------------------------------------------------------------------------

  private schedule(ms: number): void {
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => void this.poll(), ms);
  }

  private async poll(): Promise<void> {
    const runId = this.runId;
    const path = this.selected?.path ?? null;
    if (!runId) {
      return;
    }
    const generation = this.generation;
    let wasDone = true;
    try {
      wasDone = this.status?.done ?? true;
      const got = await requestAPI<PipelineRunStatus>(`pipeline-runs/${segment(runId)}`, { path });
      if (generation !== this.generation || runId !== this.runId) {
        return; // another pipeline or run was selected meanwhile
      }
      this.status = got;
      this.awaiting = false;
      this.renderRun();
      if (!got.done) {
        if (this.isVisible) {
          this.schedule(got.launcher ? POLL_MS : POLL_MS * 3);
        }
      } else if (!wasDone) {
        void this.loadList(); // the latest run of the list changed
      }
    } catch (error) {
      if (generation !== this.generation) {
        return;
      }
      const text = error instanceof NbmlopsApiError ? error.message : String(error);
      clear(this.runBox);
      this.runBox.appendChild(message(text, 'error'));
      if (this.isVisible && !(error instanceof NbmlopsApiError && error.status === 404)) {
        this.schedule(POLL_MS * 3);
      }
    }
  }

  private renderRun(note?: string): void {
    clear(this.runBox);
    const p = this.selected;
    if (!p) {
      return;
    }
    const st = this.status;
    const states = new Map<string, PipelineStepStatus>();
    for (const step of st?.steps ?? []) {
      states.set(step.name, step);
    }
    this.drawDag(p.steps.length ? p.steps : st?.steps ?? [], states);
    this.updateButtons();
    if (!st) {
      this.runBox.appendChild(
        message(note ?? (this.runId ? 'Loading the latest run…' : 'Not run yet: press Run.'))
      );
      return;
    }
    const elapsed =
      st.run?.duration ??
      (st.run && !st.done ? Date.now() / 1000 - st.run.start_time : null);
    this.runBox.appendChild(
      h(
        'div',
        { class: 'nbmlops-runline' },
        h('span', { class: `nbmlops-badge nbmlops-run-${st.status}`, 'data-status': st.status }, st.status),
        h('span', { class: 'nbmlops-runname' }, st.pipeline ?? p.name),
        h('span', { class: 'nbmlops-dim', title: st.run_id }, `run ${st.run_id.slice(0, 8)}`),
        st.run ? h('span', { class: 'nbmlops-dim' }, `started ${formatTime(st.run.start_time)}`) : null,
        elapsed !== null ? h('span', { class: 'nbmlops-dim' }, formatDuration(elapsed)) : null,
        st.launcher?.cancel_requested && !st.done ? h('span', { class: 'nbmlops-dim' }, 'cancelling…') : null
      )
    );
    if (st.run && Object.keys(st.run.params).length) {
      this.runBox.appendChild(
        h(
          'div',
          { class: 'nbmlops-chips' },
          ...Object.entries(st.run.params).map(([k, v]) =>
            h('span', { class: 'nbmlops-chip nbmlops-chip-param' }, `${k}=${v}`)
          )
        )
      );
    }
    if (st.definition_error) {
      this.runBox.appendChild(message(st.definition_error));
    }
    const launcher = st.launcher;
    if (launcher && launcher.log_tail && launcher.log_tail.length) {
      this.runBox.appendChild(
        message(
          `nbmlops pipeline run exited with code ${launcher.exit_code}` +
            (launcher.log ? ` (log: ${launcher.log})` : ''),
          launcher.exit_code === 130 ? 'info' : 'error'
        )
      );
      this.runBox.appendChild(h('pre', { class: 'nbmlops-code nbmlops-log' }, launcher.log_tail.join('\n')));
    }
    this.runBox.appendChild(this.stepsTable(st));
  }

  private stepsTable(st: PipelineRunStatus): HTMLElement {
    const head = h(
      'tr',
      {},
      h('th', { scope: 'col' }, 'Step'),
      h('th', { scope: 'col' }, 'State'),
      h('th', { scope: 'col' }, 'Time'),
      h('th', { scope: 'col' }, 'Tries'),
      h('th', { scope: 'col' }, 'Run')
    );
    const body = h('tbody', {});
    for (const step of st.steps) {
      const time =
        step.duration ??
        (step.state === 'running' && step.start_time !== null
          ? Date.now() / 1000 - step.start_time
          : null);
      const row = h(
        'tr',
        {
          class: `nbmlops-steprow${step.run_id ? ' nbmlops-clickable' : ''}${this.shownStep === step.name ? ' jp-mod-selected' : ''}`,
          'data-step': step.name,
          'data-state': step.state,
          tabindex: step.run_id ? 0 : null,
          title: step.run_id ? 'Show the cells of this step run' : null,
          onClick: () => void this.showCells(step),
          onKeydown: (e: KeyboardEvent) => {
            if (e.key === 'Enter') {
              void this.showCells(step);
            }
          }
        },
        h('td', { title: step.notebook ?? '' }, step.name),
        h('td', {}, h('span', { class: `nbmlops-badge nbmlops-state-${step.state}` }, step.state)),
        h('td', {}, formatDuration(time)),
        h('td', {}, step.attempts ? String(step.attempts) : ''),
        h(
          'td',
          { title: step.cached_from ? `outputs reused from run ${step.cached_from}` : step.run_id ?? '' },
          step.run_id ? step.run_id.slice(0, 8) : ''
        )
      );
      body.appendChild(row);
      if (step.error || (step.state === 'cached' && step.cached_from)) {
        const text = step.error
          ? `${step.error.error_name ?? 'error'}: ${step.error.error_value ?? ''}` +
            (step.error.execution_count !== null ? ` (cell [${step.error.execution_count}])` : '')
          : `cached: outputs of run ${step.cached_from!.slice(0, 8)} reused, no kernel started`;
        body.appendChild(
          h(
            'tr',
            { class: `nbmlops-stepnote${step.error ? ' nbmlops-mod-error' : ''}` },
            h('td', { colspan: 5 }, text)
          )
        );
      }
    }
    return h('table', { class: 'nbmlops-table', 'aria-label': 'Steps' }, h('thead', {}, head), body);
  }

  private async showCells(step: PipelineStepStatus): Promise<void> {
    if (!step.run_id) {
      return;
    }
    this.shownStep = step.name;
    for (const row of Array.from(this.runBox.querySelectorAll('.nbmlops-steprow'))) {
      row.classList.toggle('jp-mod-selected', row.getAttribute('data-step') === step.name);
    }
    clear(this.cells);
    this.cells.appendChild(message(`Loading the cells of step ${step.name}…`));
    try {
      const page = await requestAPI<CellPage>(`runs/${segment(step.run_id)}/cells`, {
        path: this.selected?.path
      });
      clear(this.cells);
      this.cells.appendChild(
        h('h3', {}, `Cells of step ${step.name}`, h('span', { class: 'nbmlops-dim' }, ` run ${page.run_id.slice(0, 8)}`))
      );
      if (step.state === 'cached') {
        this.cells.appendChild(
          message('A cached step runs no cell: its outputs come from an earlier run' +
            (step.cached_from ? ` (${step.cached_from.slice(0, 8)}).` : '.'))
        );
      }
      for (const cell of page.cells) {
        this.cells.appendChild(this.cellRow(cell));
      }
      if (!page.cells.length && step.state !== 'cached') {
        this.cells.appendChild(message('No cell executions recorded (yet).'));
      }
    } catch (error) {
      clear(this.cells);
      this.cells.appendChild(message(this.gate.note(error), 'error'));
    }
  }

  private cellRow(cell: Cell): HTMLElement {
    const chips = h('div', { class: 'nbmlops-chips' });
    for (const [k, v] of Object.entries(cell.params)) {
      chips.appendChild(h('span', { class: 'nbmlops-chip nbmlops-chip-param' }, `${k}=${v}`));
    }
    for (const m of cell.metrics) {
      chips.appendChild(h('span', { class: 'nbmlops-chip nbmlops-chip-metric' }, `${m.key}=${formatValue(m.value)}`));
    }
    for (const [kind, list] of [['read', cell.reads], ['wrote', cell.writes]] as const) {
      for (const a of list) {
        chips.appendChild(
          h(
            'span',
            {
              class: `nbmlops-chip nbmlops-chip-${kind} nbmlops-clickable`,
              title: `${kind} ${a.path ?? a.uri}: show its lineage`,
              onClick: () => this.ctx.showLineage(`artifact:${a.id}`)
            },
            `${kind === 'read' ? '⬇' : '⬆'} ${basename(a.path ?? a.uri)}`
          )
        );
      }
    }
    if (cell.status !== 'ok') {
      chips.appendChild(
        h('span', { class: 'nbmlops-chip nbmlops-chip-error', title: `${cell.error_name}: ${cell.error_value}` }, `${cell.error_name ?? 'error'}: ${cell.error_value ?? ''}`)
      );
    }
    const count = cell.execution_count === null ? ' ' : String(cell.execution_count);
    return h(
      'div',
      { class: `nbmlops-stepcell${cell.status !== 'ok' ? ' nbmlops-mod-error' : ''}`, 'data-seq': cell.seq, title: cell.source },
      h('span', { class: 'nbmlops-count' }, `[${count}]`),
      h('span', { class: `nbmlops-status nbmlops-status-${cell.status}` }, cell.status === 'ok' ? '✓' : '✗'),
      h('span', { class: 'nbmlops-duration' }, formatDuration(cell.duration)),
      h('code', { class: 'nbmlops-source' }, firstLine(cell.source)),
      chips
    );
  }

  // -- the DAG ---------------------------------------------------------------------------------

  private drawDag(steps: PipelineStep[], states: Map<string, PipelineStepStatus>): void {
    clear(this.dag);
    if (!steps.length) {
      return;
    }
    const levels: string[][] = [];
    for (const step of steps) {
      const level = Math.max(0, step.level);
      (levels[level] = levels[level] || []).push(step.name);
    }
    const rows = Math.max(...levels.map(l => (l ? l.length : 0)), 1);
    const width = PAD * 2 + levels.length * (NODE_W + GAP_X) - GAP_X;
    const height = PAD * 2 + rows * (NODE_H + GAP_Y) - GAP_Y;
    const at = new Map<string, { x: number; y: number }>();
    levels.forEach((names, li) => {
      if (!names) {
        return;
      }
      const offset = ((rows - names.length) * (NODE_H + GAP_Y)) / 2;
      names.forEach((name, ri) => {
        at.set(name, { x: PAD + li * (NODE_W + GAP_X), y: PAD + offset + ri * (NODE_H + GAP_Y) });
      });
    });
    const svg = s('svg', {
      class: 'nbmlops-dag',
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: 'img',
      'aria-label': `Steps of ${this.selected?.name ?? 'the pipeline'}`
    });
    const defs = s('defs', {});
    const marker = s('marker', {
      id: `nbmlops-dag-arrow-${this.id}`,
      viewBox: '0 0 10 10',
      refX: 10,
      refY: 5,
      markerWidth: 6,
      markerHeight: 6,
      orient: 'auto-start-reverse'
    });
    marker.appendChild(s('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'nbmlops-arrowhead' }));
    defs.appendChild(marker);
    svg.appendChild(defs);
    for (const step of steps) {
      const b = at.get(step.name);
      for (const dep of step.depends_on) {
        const a = at.get(dep);
        if (!a || !b) {
          continue;
        }
        const x1 = a.x + NODE_W;
        const y1 = a.y + NODE_H / 2;
        const x2 = b.x;
        const y2 = b.y + NODE_H / 2;
        const mx = (x1 + x2) / 2;
        svg.appendChild(
          s('path', {
            d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`,
            class: 'nbmlops-edge',
            'marker-end': `url(#nbmlops-dag-arrow-${this.id})`
          })
        );
      }
    }
    for (const step of steps) {
      const p = at.get(step.name);
      if (!p) {
        continue;
      }
      const status = states.get(step.name);
      const state = status?.state ?? 'none';
      const g = s('g', {
        class: `nbmlops-dag-node nbmlops-step-${state}${status?.run_id ? ' nbmlops-clickable' : ''}`,
        transform: `translate(${p.x},${p.y})`,
        'data-step': step.name,
        'data-state': state,
        tabindex: status?.run_id ? 0 : null,
        role: status?.run_id ? 'button' : null,
        onClick: () => {
          if (status) {
            void this.showCells(status);
          }
        }
      });
      g.appendChild(s('rect', { width: NODE_W, height: NODE_H, rx: 6 }));
      const label = step.name.length > 16 ? step.name.slice(0, 15) + '…' : step.name;
      g.appendChild(s('text', { x: 8, y: 13, class: 'nbmlops-node-label' }, label));
      g.appendChild(s('text', { x: 8, y: 25, class: 'nbmlops-node-type' }, status ? state : ''));
      g.appendChild(s('title', {}, `${step.name}${status ? `: ${state}` : ''}${step.notebook ? ` (${step.notebook})` : ''}`));
      svg.appendChild(g);
    }
    this.dag.appendChild(svg);
  }

  private gate = new StoreGate();
  private pipelines: PipelineInfo[] = [];
  private selected: PipelineInfo | null = null;
  private runId: string | null = null;
  private status: PipelineRunStatus | null = null;
  private starting = false;
  /** A run was started and its first status has not come back yet. */
  private awaiting = false;
  private generation = 0;
  private timer = 0;
  private shownStep: string | null = null;
  private edits = new Map<string, Map<string, string>>();
  private runButton: HTMLButtonElement | null = null;
  private cancelButton: HTMLButtonElement | null = null;
  private banner = h('div', { class: 'nbmlops-banner' });
  private table = h('table', { class: 'nbmlops-table', 'aria-label': 'Pipelines' });
  private detail = h('div', { class: 'nbmlops-pipeline-detail' });
  private dag = h('div', { class: 'nbmlops-dag-box' });
  private form = h('div', { class: 'nbmlops-pipeline-form' });
  private runBox = h('div', { class: 'nbmlops-pipeline-run' });
  private cells = h('div', { class: 'nbmlops-step-cells' });
}

/** What of a definition the detail view shows (to redraw it only when that changed). */
function signature(p: PipelineInfo): string {
  return JSON.stringify([p.name, p.ok, p.error, p.steps, p.params]);
}
