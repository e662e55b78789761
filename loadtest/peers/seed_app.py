"""The seed document's `inference_api.py`, rebuilt in its own style (benchmark peer only).

FastAPI + `mlflow.pyfunc` + a pandas DataFrame per request, exactly as the hand-glued
stack does it. The one change: `data: list = Body(...)`, because current FastAPI reads a
bare `data: list` parameter as a form/file upload and answers 422 to JSON.
"""

import os
import time

import mlflow.pyfunc
import numpy as np
import pandas as pd
from fastapi import Body, FastAPI
from fastapi.responses import Response
from prometheus_client import Counter, Histogram, generate_latest

# The seed loads "models:/iris-classifier/Production"; the harness says which version.
model = mlflow.pyfunc.load_model(os.environ["SEED_MODEL_URI"])
COLUMNS = [c.name for c in model.metadata.get_input_schema().inputs]

app = FastAPI()

REQUEST_COUNT = Counter("prediction_requests_total", "Total prediction requests")
REQUEST_LATENCY = Histogram("prediction_latency_seconds", "Prediction latency in seconds")


@app.post("/predict")
def predict(data: list = Body(...)):
    REQUEST_COUNT.inc()
    start = time.time()

    df = pd.DataFrame(np.array(data), columns=COLUMNS)
    prediction = model.predict(df)

    REQUEST_LATENCY.observe(time.time() - start)
    return {"prediction": prediction.tolist()}


@app.get("/metrics")
def metrics():
    return Response(generate_latest())
