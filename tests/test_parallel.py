import operator

from hpa_keras.parallel import ordered_map


def test_results_come_in_task_order_from_worker_processes():
    tasks = [(index, 3) for index in range(40)]
    assert list(ordered_map(_power, tasks, workers=2)) == [index**3 for index in range(40)]
    assert list(ordered_map(_power, tasks, workers=1)) == [index**3 for index in range(40)]


def test_tasks_are_pulled_lazily_within_the_window():
    pulled = []

    def tasks():
        for index in range(100):
            pulled.append(index)
            yield (index, 2)

    results = ordered_map(_power, tasks(), workers=2, max_pending=5)
    assert next(results) == 0
    assert len(pulled) <= 6  # the window of 5, plus one to refill it
    assert next(results) == 1 and len(pulled) <= 7
    results.close()


def _power(task):
    return operator.pow(*task)
