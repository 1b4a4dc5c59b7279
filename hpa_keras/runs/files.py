"""The names of the files in a run folder (``hpa-keras fit``) and a cv folder (``hpa-keras cv``).

A run folder::

    RUN_DIR/
      config.yaml          CONFIG_FILE: the resolved settings
      input.json           INPUT_FILE: how the model reads images
      model.keras          MODEL_FILE: the best epoch's model; its presence: the run finished
      thresholds.json      THRESHOLDS_FILE: the best epoch's per-class thresholds and F1
      calibration.json     CALIBRATION_FILE: per-class calibration maps, when calibrated
      import.json          IMPORT_FILE: an imported run's provenance (import-model): the
                           published model, each file read (name, bytes, SHA-256), why
                           its thresholds are what they are
      history.csv          HISTORY_FILE: one row per epoch
      learning_curves.png  CURVES_FILE: the history as a picture
      lr_finder.png        LR_FINDER_FILE: the learning-rate range test (``--find-lr``)
      logs/                LOGS_FOLDER: TensorBoard logs
      backup/              BACKUP_FOLDER: while running, what a restart resumes from
      stage1.weights.h5    STAGE_ONE_WEIGHTS: while running, the frozen stage's weights
      swa-state.npz        SWA_STATE_FILE: while running, the weight average so far
      engine/views-V/      ENGINE_FOLDER: the model exported for prediction with V views
                           (model.xml and model.bin, OpenVINO's) and ENGINE_FILE
                           (engine.json: the model digest it serves, its precision)

A cv folder::

    CV_DIR/
      cv.yaml              CV_FILE: the shared settings and the folds; marks a cv folder
      fold-K/              one run folder per fold (:func:`hpa_keras.runs.fold_folder`),
                           with oof.npz (FOLD_OOF_FILE): its validation fold's labels and
                           predictions
      oof.csv              OOF_FILE: every out-of-fold prediction
      thresholds.json      THRESHOLDS_FILE: thresholds tuned on the out-of-fold predictions
      calibration.json     CALIBRATION_FILE: calibration maps fitted on them
      cv_summary.json      CV_SUMMARY_FILE: per-fold and pooled figures
      report/              REPORT_FOLDER: the report of the out-of-fold predictions
"""

# A run folder
CONFIG_FILE = "config.yaml"
INPUT_FILE = "input.json"
MODEL_FILE = "model.keras"
THRESHOLDS_FILE = "thresholds.json"
CALIBRATION_FILE = "calibration.json"
IMPORT_FILE = "import.json"
HISTORY_FILE = "history.csv"
CURVES_FILE = "learning_curves.png"
LR_FINDER_FILE = "lr_finder.png"
LOGS_FOLDER = "logs"
BACKUP_FOLDER = "backup"
STAGE_ONE_WEIGHTS = "stage1.weights.h5"
SWA_STATE_FILE = "swa-state.npz"
ENGINE_FOLDER = "engine"
ENGINE_FILE = "engine.json"

# A cv folder (its thresholds file is THRESHOLDS_FILE too)
CV_FILE = "cv.yaml"
FOLD_FOLDER = "fold-{fold}"
FOLD_OOF_FILE = "oof.npz"
OOF_FILE = "oof.csv"
CV_SUMMARY_FILE = "cv_summary.json"
REPORT_FOLDER = "report"
