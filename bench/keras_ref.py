"""The Keras row of bench/speed.py: the same model shape in Keras/TensorFlow, run in its own venv.

Usage (bench/speed.py does this): <keras venv>/bin/python bench/keras_ref.py DATA.npz OUT.json
DATA.npz holds train_x (rows, max_length) int32 padded with 0, train_y, test_x, kept (the kept
tokens of the training rows) and the model shape. The model is the seed example of this field:
Embedding -> Bidirectional(LSTM, return_sequences) -> GlobalMaxPooling1D -> Dropout -> Dense,
Adam, `model.fit` defaults (batch 32, shuffled). Its graph is traced on a few batches first, so
the timed epoch is the steady state.
"""

import json
import sys
import time

import numpy as np


def main() -> None:
    data = np.load(sys.argv[1])
    import keras
    import tensorflow as tf

    shape = {k: int(data[k]) for k in ("vocab", "embedding_dim", "hidden_size", "classes")}
    keras.utils.set_random_seed(13)
    model = keras.Sequential(
        [
            keras.Input(shape=(data["train_x"].shape[1],), dtype="int32"),
            keras.layers.Embedding(shape["vocab"], shape["embedding_dim"]),
            keras.layers.Bidirectional(
                keras.layers.LSTM(shape["hidden_size"], return_sequences=True)
            ),
            keras.layers.GlobalMaxPooling1D(),
            keras.layers.Dropout(float(data["dropout"])),
            keras.layers.Dense(shape["classes"], activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(float(data["lr"])), loss="sparse_categorical_crossentropy"
    )
    x, y, test_x = data["train_x"], data["train_y"], data["test_x"]
    model.fit(x[:96], y[:96], epochs=1, verbose=0)  # traces the training graph
    start = time.perf_counter()
    model.fit(x, y, epochs=1, verbose=0)
    train_seconds = time.perf_counter() - start
    model.predict(test_x[:64], batch_size=32, verbose=0)  # traces the inference graph
    start = time.perf_counter()
    model.predict(test_x, batch_size=32, verbose=0)
    predict_seconds = time.perf_counter() - start
    json.dump(
        {
            "train_seconds": train_seconds,
            "train_tokens_per_second": int(data["kept"]) / train_seconds,
            "predict_seconds": predict_seconds,
            "predict_texts_per_second": len(test_x) / predict_seconds,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "threads": [
                tf.config.threading.get_intra_op_parallelism_threads(),
                tf.config.threading.get_inter_op_parallelism_threads(),
            ],
        },
        open(sys.argv[2], "w"),  # noqa: SIM115 - closed when the process ends
    )


if __name__ == "__main__":
    main()
