/**
 * The "MLOps" side panel: a header and five tabs (This notebook, Runs, Lineage, Pipelines,
 * Schedules) over the active notebook. Tracks which notebook is active and whether its kernel is running cells.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { Signal } from '@lumino/signaling';
import { Panel, TabPanel, Widget } from '@lumino/widgets';

import { IPanelContext } from './context';
import { h } from './dom';
import { LineageView } from './lineageView';
import { NotebookView } from './notebookView';
import { PipelinesView } from './pipelinesView';
import { RunsView } from './runsView';
import { SchedulesView } from './schedulesView';

export class MlopsPanel extends Panel implements IPanelContext {
  readonly notebookChanged = new Signal<this, string | null>(this);

  constructor(
    private app: JupyterFrontEnd,
    private tracker: INotebookTracker
  ) {
    super();
    this.id = 'nbmlops-panel';
    this.addClass('nbmlops-panel');
    this.title.caption = 'MLOps';
    const header = new Widget({
      node: h('header', { class: 'nbmlops-header' }, h('h2', {}, 'MLOps'))
    });
    this.notebookView = new NotebookView(this);
    this.runsView = new RunsView(this);
    this.lineageView = new LineageView(this);
    this.pipelinesView = new PipelinesView(this);
    this.schedulesView = new SchedulesView();
    this.tabs = new TabPanel();
    this.tabs.addClass('nbmlops-tabs');
    this.tabs.tabBar.addClass('jp-NbmlopsTabBar');
    this.tabs.addWidget(this.notebookView);
    this.tabs.addWidget(this.runsView);
    this.tabs.addWidget(this.lineageView);
    this.tabs.addWidget(this.pipelinesView);
    this.tabs.addWidget(this.schedulesView);
    this.addWidget(header);
    this.addWidget(this.tabs);

    tracker.currentChanged.connect((_, panel) => this.watch(panel));
    this.watch(tracker.currentWidget);
    NotebookActions.executionScheduled.connect((_, args) => {
      if (args.notebook === this.tracker.currentWidget?.content) {
        this.activity = Date.now();
      }
    });
    NotebookActions.executed.connect((_, args) => {
      if (args.notebook === this.tracker.currentWidget?.content) {
        this.activity = Date.now();
      }
    });
  }

  currentPath(): string | null {
    return this.tracker.currentWidget?.context.path ?? null;
  }

  lastActivity(): number {
    return this.activity;
  }

  kernelBusy(): boolean {
    return this.tracker.currentWidget?.sessionContext.kernelDisplayStatus === 'busy';
  }

  jumpToCell(cellId: string): boolean {
    const panel = this.tracker.currentWidget;
    if (!panel) {
      return false;
    }
    const notebook = panel.content;
    const index = notebook.widgets.findIndex(cell => cell.model.id === cellId);
    if (index < 0) {
      return false;
    }
    notebook.deselectAll();
    notebook.activeCellIndex = index;
    notebook.mode = 'command';
    void notebook.scrollToItem(index, 'center');
    this.app.shell.activateById(panel.id);
    return true;
  }

  showLineage(target: string): void {
    this.tabs.currentWidget = this.lineageView;
    this.lineageView.showTarget(target);
  }

  private watch(panel: NotebookPanel | null): void {
    if (this.watched === panel) {
      return;
    }
    if (this.watched && !this.watched.isDisposed) {
      this.watched.sessionContext.statusChanged.disconnect(this.onStatus, this);
    }
    this.watched = panel;
    if (panel) {
      panel.sessionContext.statusChanged.connect(this.onStatus, this);
    }
    this.notebookChanged.emit(this.currentPath());
  }

  private onStatus(): void {
    this.activity = Date.now();
  }

  private activity = 0;
  private watched: NotebookPanel | null = null;
  private tabs: TabPanel;
  private notebookView: NotebookView;
  private runsView: RunsView;
  private lineageView: LineageView;
  private pipelinesView: PipelinesView;
  private schedulesView: SchedulesView;
}
