"""The user's own code and files: what initlab imports, runs or reads on their behalf, and
how run keys tell one version of it from the next.

* :mod:`~initlab.usercode.specs` — ``--model`` / ``--data`` specs (``module:function``,
  ``file.py:function``, data files): loading them and :func:`source_fingerprint` of their
  files, part of every run key;
* :mod:`~initlab.usercode.imports` — the user's own modules a file imports (its helpers'
  files count in its fingerprint), found without running it;
* :mod:`~initlab.usercode.inprocess` — callables and arrays passed from Python, registered
  in this process as ``callable:name:hash`` specs;
* :mod:`~initlab.usercode.fingerprint` — the hash of such a callable (its source and what it
  reads) or of arrays;
* :mod:`~initlab.usercode.loaded` — whether an imported module still runs its file's code.

Import from those modules; this one imports nothing, so that loading any of them stays
cheap.
"""
