"""The classic Keras example, verbatim but for its import line, runs and learns."""

import subprocess
import sys
import textwrap

import numpy as np

PROGRAM = '''
from fastdl import layers, models

# 定义模型
model = models.Sequential()
model.add(layers.Dense(64, activation='relu', input_shape=(100,)))
model.add(layers.Dense(64, activation='relu'))
model.add(layers.Dense(10, activation='softmax'))

# 编译模型
model.compile(optimizer='adam',
              loss='categorical_crossentropy',
              metrics=['accuracy'])

# 训练模型
model.fit(x_train, y_train, epochs=10)

# 评估模型
loss, accuracy = model.evaluate(x_test, y_test)
print('Accuracy:', accuracy)
'''


def _data(seed=0):
    """Learnable synthetic data: 10 classes from a random linear map of 100 features."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((100, 10))
    x = rng.standard_normal((5400, 100))
    y = np.eye(10)[np.argmax(x @ w, axis=1)]
    return x[:5000], y[:5000], x[5000:], y[5000:]


def test_keras_example_runs_and_learns(tmp_path):
    x_train, y_train, x_test, y_test = _data()
    np.savez(tmp_path / "data.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    script = textwrap.dedent(f'''
        import numpy as np
        d = np.load({str(tmp_path / "data.npz")!r})
        x_train, y_train, x_test, y_test = d["x_train"], d["y_train"], d["x_test"], d["y_test"]
    ''') + PROGRAM
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Epoch 10/10" in r.stdout
    assert "\r" not in r.stdout  # not a terminal: no carriage-return redraws
    accuracy = float(r.stdout.strip().splitlines()[-1].split("Accuracy:")[1])
    assert 0.6 < accuracy <= 1.0, r.stdout  # chance is 0.1
