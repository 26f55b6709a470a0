"""The local Performance Platform: backdrop's write and read APIs, for development, demos and tests.

Needs the ``platform`` extra (Starlette and uvicorn)::

    pip install 'perf-sdk[platform]'

* :func:`create_app` builds the ASGI application; :class:`LocalPlatform` serves
  it on a loopback port from a background thread; ``perf-sdk serve`` runs it
  from the command line.
* Storage is one SQLite database (WAL) holding every data set, with an hourly
  rollup kept exact on every write, so grouped reads over millions of records
  answer in milliseconds (see ``_store.py``).

Tokens, a choice of perf_sdk's own: backdrop gives each data set its own token
and knows its data sets in advance. Here either

* ``token="..."``: one bearer token writes to every data set, and any
  ``<group>/<type>`` pair of lower-case slugs is created on its first write
  (convenient for development: no set-up); or
* ``tokens={"group/type": "token", ...}``: backdrop's model. Only those data
  sets exist (they read as empty until written), each with its own token; a
  write elsewhere is a 404; or
* ``config=`` (``perf-sdk serve --tokens-file``): a data-set configuration with
  backdrop's settings per data set (raw queries, published, realtime, maximum
  age), an admin token and the services' metadata (see ``_datasets.py``).

Reads need no token, as on backdrop for published data sets. A data set that
does not exist (never written, nor declared) reads as 404. Storage sits behind
a small protocol (``_backend.py``) that a second backend can implement.
"""

from __future__ import annotations

from perf_sdk._errors import ConfigurationError

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ConfigurationError(
        f"the local platform needs {exc.name or 'starlette and uvicorn'}: pip install 'perf-sdk[platform]'"
    ) from exc

from perf_sdk.platform._app import create_app
from perf_sdk.platform._server import LocalPlatform

__all__ = ["LocalPlatform", "create_app"]
