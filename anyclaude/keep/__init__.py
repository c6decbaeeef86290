"""Keep-alive: servers anyclaude started outlive the run that started them for `keep_alive`.

A small keeper process (`daemon.py`) owns each kept server: it starts the server (which dies
with the keeper, PR_SET_PDEATHSIG), counts the anyclaude runs using it (each holds one open
connection to the keeper's unix socket, which the kernel closes even when the run is
SIGKILLed), and stops the server's whole process tree once nobody used it for `keep_alive`.
`state.py` is the on-disk record `anyclaude status` and `anyclaude stop` read; `client.py` is
the side a run uses.
"""
