"""`vethpeer graph`: a graph model built from the report (:mod:`.model`, :mod:`.build`,
:mod:`.shape`) and its renderers (:mod:`.dot`, :mod:`.mermaid`, :mod:`.html`), with
Graphviz (:mod:`.graphviz`) doing every layout."""
