import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';

import { mlopsIcon } from './icon';
import { MlopsPanel } from './panel';

const OPEN = 'nbmlops:open-panel';

/** The MLOps side panel: live cell lineage of the active notebook, runs, lineage graphs,
 * pipelines, schedules and registered models. */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbmlops:panel',
  description:
    'MLOps side panel: cell lineage, runs, comparisons, lineage graphs, pipelines, schedules and models.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    restorer: ILayoutRestorer | null,
    palette: ICommandPalette | null
  ): void => {
    const panel = new MlopsPanel(app, tracker);
    panel.title.icon = mlopsIcon;
    app.shell.add(panel, 'left', { rank: 650 });
    if (restorer) {
      restorer.add(panel, panel.id);
    }
    app.commands.addCommand(OPEN, {
      label: 'Show the MLOps panel',
      icon: mlopsIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    if (palette) {
      palette.addItem({ command: OPEN, category: 'MLOps' });
    }
  }
};

export default plugin;
