import { LabIcon } from '@jupyterlab/ui-components';

// A small lineage graph: three nodes joined by edges. jp-icon3 follows the theme.
const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <circle cx="5" cy="6" r="3"/>
    <circle cx="5" cy="18" r="3"/>
    <circle cx="19" cy="12" r="3.5"/>
    <path d="M7.6 7.2l8.2 3.6-.8 1.8-8.2-3.6zM7 16.2l8.4-4 .9 1.8-8.4 4z"/>
  </g>
</svg>`;

export const mlopsIcon = new LabIcon({ name: 'nbmlops:mlops', svgstr });
