import { Signal } from '@lumino/signaling';

/** What the views of the panel share: the active notebook and navigation between tabs. */
export interface IPanelContext {
  /** Path of the active notebook relative to the server root, or null. */
  currentPath(): string | null;
  /** Emits when the active notebook changes or its kernel starts running cells. */
  readonly notebookChanged: Signal<any, string | null>;
  /** Milliseconds since epoch of the last sign of execution in the active notebook. */
  lastActivity(): number;
  /** Whether the active notebook's kernel is busy. */
  kernelBusy(): boolean;
  /** Select and scroll to the cell with this id in the active notebook; false if not found. */
  jumpToCell(cellId: string): boolean;
  /** Open the Lineage tab on a target (path relative to the root, artifact:ID, cell:ID). */
  showLineage(target: string): void;
}
