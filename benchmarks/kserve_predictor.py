"""A scikit-learn model served by KServe's Python model server, as a KServe user writes it.

Runs in the KServe venv the serving benchmark makes (benchmarks/thirdparty_servers.py), never in
ours: ``python kserve_predictor.py --model_path model.joblib --model_name fraud --http_port N``
plus any of ``kserve.model_server``'s own flags. KServe's sklearnserver is not published on PyPI
(it ships only in KServe's container image), so this is the documented way to serve a model with
the ``kserve`` package: a ``kserve.Model`` subclass whose ``load`` and ``predict`` do what
sklearnserver's do (``get_predict_input`` / ``get_predict_response``, so a V2 request comes in as
an ``InferRequest`` and an ``InferResponse`` goes out with output ``output-0``), started by
``kserve.ModelServer``.

Two departures from a plain ``ModelServer().start([model])``, both for a fair comparison and
both said here. The lines written for every request are silenced, as our server and MLServer
(``debug`` off) write none: uvicorn's access log and KServe's latency and timing lines
(``kserve.trace``) are turned down to WARNING, and FastAPI's warning that the
``ORJSONResponse`` KServe answers with is deprecated (since FastAPI 0.131; KServe's repository
locks 0.136) is ignored: scikit-learn's predict resets Python's warning registry, so it was
printed on every request. And the REST server binds ``--host`` (127.0.0.1), where KServe
hard-codes 0.0.0.0, since the benchmark's traffic stays on this machine.
"""

from __future__ import annotations

import argparse
import copy
import logging
import warnings

import joblib
from kserve import Model, ModelServer, model_server
from kserve.logging import KSERVE_LOG_CONFIG, configure_logging
from kserve.protocol.infer_type import InferRequest, InferResponse
from kserve.protocol.rest import server as rest_server
from kserve.utils.utils import get_predict_input, get_predict_response


class SKLearnPredictor(Model):
    def __init__(self, name: str, path: str):
        super().__init__(name)
        self.path = path
        self.model = None
        self.load()

    def load(self) -> bool:
        self.model = joblib.load(self.path)
        self.ready = True
        return self.ready

    # Synchronous, like sklearnserver's: KServe then calls it on the event loop.
    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None
                ) -> InferResponse:
        return get_predict_response(payload, self.model.predict(get_predict_input(payload)),
                                    self.name)


def rest_server_on(host: str) -> type[rest_server.RESTServer]:
    """KServe's REST server, listening on ``host`` instead of every interface."""

    class RESTServerOnHost(rest_server.RESTServer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.config.host = host

    return RESTServerOnHost


def quiet_log_config() -> dict:
    """KServe's own logging setup, less the lines it writes for every request."""
    config = copy.deepcopy(KSERVE_LOG_CONFIG)
    config["loggers"]["uvicorn.access"]["level"] = "WARNING"
    config["loggers"]["kserve.trace"]["level"] = "WARNING"
    return config


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_path", required=True, help="a joblib-pickled estimator")
    parser.add_argument("--host", default="127.0.0.1", help="address the REST server binds")
    args, _ = parser.parse_known_args()
    configure_logging(quiet_log_config())  # ModelServer keeps a configuration it finds
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    logging.getLogger("kserve").info("serving %s as %s", args.model_path, args.model_name)
    model_server.RESTServer = rest_server_on(args.host)  # what ModelServer.start builds
    model = SKLearnPredictor(args.model_name, args.model_path)
    ModelServer().start([model])


if __name__ == "__main__":
    main()
