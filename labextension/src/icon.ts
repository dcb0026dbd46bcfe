import { LabIcon } from '@jupyterlab/ui-components';

// Icons of the panel and its tabs. `jp-icon3` follows the theme (light and dark).
function icon(name: string, body: string): LabIcon {
  const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">${body}</g>
</svg>`;
  return new LabIcon({ name: `nbmlops:${name}`, svgstr });
}

/** A small lineage graph: three nodes joined by edges (the panel, and the Lineage tab). */
export const mlopsIcon = icon(
  'mlops',
  `<circle cx="5" cy="6" r="3"/><circle cx="5" cy="18" r="3"/><circle cx="19" cy="12" r="3.5"/>
   <path d="M7.6 7.2l8.2 3.6-.8 1.8-8.2-3.6zM7 16.2l8.4-4 .9 1.8-8.4 4z"/>`
);

/** A page with cell rows (This notebook). */
export const cellsIcon = icon(
  'cells',
  `<path d="M5 2h10l5 5v15H5zm2 2v16h11V8h-4V4z"/>
   <path d="M8.5 10h7v2h-7zM8.5 14h7v2h-7zM8.5 18h4v1.5h-4z"/>`
);

/** Rows of a table (Runs). */
export const runsIcon = icon(
  'runs',
  `<path d="M3 4h3v3H3zM8 4.5h13v2H8zM3 10.5h3v3H3zM8 11h13v2H8zM3 17h3v3H3zM8 17.5h13v2H8z"/>`
);

/** Three steps in a DAG (Pipelines). */
export const pipelinesIcon = icon(
  'pipelines',
  `<path d="M2 9h6v6H2zM16 3h6v6h-6zM16 15h6v6h-6z"/>
   <path d="M8 11h3V6h5v2h-3v8h3v2h-5v-5H8z"/>`
);

/** A clock (Schedules). */
export const schedulesIcon = icon(
  'schedules',
  `<path d="M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm0 2a8 8 0 1 1 0 16 8 8 0 0 1 0-16z"/>
   <path d="M11 6h2v5.6l3.8 2.2-1 1.7-4.8-2.8z"/>`
);

/** A box (Models: registered model versions). */
export const modelsIcon = icon(
  'models',
  `<path d="M12 2l9 5v10l-9 5-9-5V7zm0 2.3L5.4 8 12 11.7 18.6 8zM5 9.7v6.1l6 3.4v-6.1zm14 0l-6 3.4v6.1l6-3.4z"/>`
);

/** A pulse line (Monitoring: served models, traffic, drift). */
export const monitoringIcon = icon(
  'monitoring',
  `<path d="M2 11h4.4l2.1-5.2 4 11.6 3-8.3 1.7 1.9H22v2h-5.7l-.9-1-3.1 8.7-4-11.4L7.7 13H2z"/>`
);
