"""One module per object: ``slot``, ``settings``, ``template``, ``job``/``jobs``/``result``,
``stats``."""
