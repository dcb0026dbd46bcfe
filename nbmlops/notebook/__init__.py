"""The notebook face: the IPython extension, the ``%mlops`` magics and the views they render
(ipywidgets where a kernel can show them, escaped HTML and text elsewhere)."""
