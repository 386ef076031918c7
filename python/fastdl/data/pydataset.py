"""PyDataset: Keras 3's base class for data given batch by batch (keras.utils.PyDataset; its old
name Sequence too). fit, evaluate and predict take one where they take arrays."""


class PyDataset:
    """Subclass it with __len__ (the number of batches in an epoch) and __getitem__(index) returning
    batch `index` as (x, y) or (x, y, sample_weight) (x alone for predict); on_epoch_end() is called
    after each epoch (to reshuffle, say).

    workers, use_multiprocessing and max_queue_size are Keras's arguments, accepted so that a Keras
    subclass's super().__init__(**kwargs) works; fastdl reads the batches in order in the calling
    thread (a batch takes microseconds to train on: the data source is what needs to be fast)."""

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self.workers = workers
        self.use_multiprocessing = use_multiprocessing
        self.max_queue_size = max_queue_size

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index) returning a batch")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__ (its number of batches)")

    @property
    def num_batches(self):
        """The batches in an epoch (len(self)), as Keras's PyDataset has it."""
        return len(self)

    def on_epoch_begin(self):
        pass

    def on_epoch_end(self):
        pass


Sequence = PyDataset
