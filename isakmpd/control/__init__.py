"""The control interface of the daemon: the FIFO, its commands, the result and report.

isakmpd(8) is steered through a FIFO (``-f``, inventory §1.3) and signals (§1.2),
and describes itself in the result file (``S``, ``C get``) and the report (``r``,
SIGUSR1, §1.4). This package owns:

* :mod:`~isakmpd.control.fifo`: creating the FIFO and reading it (or standard
  input with ``-f -``) through the reactor, cut into lines;
* :mod:`~isakmpd.control.commands`: parsing every command line and carrying it out
  on the running daemon (a bad line is logged and ignored, nothing is written back);
* :mod:`~isakmpd.control.report`: the texts of the result file and of the report,
  and writing private files;
* :mod:`~isakmpd.control.signals`: SIGHUP, SIGUSR1 and SIGTERM handlers that only
  schedule work in the reactor.

Like :mod:`isakmpd.service`, this layer touches files, signals and the reactor;
what it does to SAs, connections and the configuration goes through the engine,
the connection manager and the configuration store.
"""
