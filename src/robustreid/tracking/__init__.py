"""Tracking with the ReID model (Section 5): an online MOTDT-style tracker, a re-entry gallery for
people entering a room seen by several cameras, MOTChallenge file I/O and TrackEval metrics.

Metrics need the ``trackeval`` package only when they are computed; the rest needs numpy and scipy.
"""

from .kalman import CHI2_95_4DOF, KalmanFilter, xyah_to_xyxy, xyxy_to_xyah
from .metrics import (
    MOTMetrics,
    ReentryOutcomes,
    concat_cameras,
    evaluate_mot,
    evaluate_mot_files,
    match_tracks_to_gt,
    mot_eval_data,
    reentry_outcomes,
)
from .motio import (
    MOTSequence,
    SeqInfo,
    frame_rows,
    load_sequence,
    read_det,
    read_gt,
    read_results,
    read_seqinfo,
    write_det,
    write_gt,
    write_results,
    write_seqinfo,
    xywh_to_xyxy,
    xyxy_to_xywh,
)
from .reentry import (
    EntryDecision,
    ReentryConfig,
    ReentryGallery,
    RoomTracker,
    ThresholdCalibration,
    calibrate_threshold,
    match_entries,
)
from .tracker import (
    CropEmbedder,
    FrameTracks,
    ReIDFeatureAdapter,
    Track,
    Tracker,
    TrackerConfig,
    appearance_distance,
    box_iou,
    crop_boxes,
    linear_assignment,
)

__all__ = [
    # kalman
    "CHI2_95_4DOF", "KalmanFilter", "xyxy_to_xyah", "xyah_to_xyxy",
    # tracker and the embedding hook
    "TrackerConfig", "Track", "FrameTracks", "Tracker", "box_iou", "linear_assignment",
    "appearance_distance", "crop_boxes", "CropEmbedder", "ReIDFeatureAdapter",
    # re-entry
    "ReentryConfig", "ThresholdCalibration", "EntryDecision", "calibrate_threshold", "match_entries",
    "ReentryGallery", "RoomTracker",
    # MOTChallenge files
    "SeqInfo", "MOTSequence", "read_seqinfo", "write_seqinfo", "read_det", "read_gt", "read_results",
    "write_det", "write_gt", "write_results", "load_sequence", "frame_rows", "xywh_to_xyxy", "xyxy_to_xywh",
    # metrics
    "MOTMetrics", "ReentryOutcomes", "mot_eval_data", "evaluate_mot", "evaluate_mot_files",
    "concat_cameras", "match_tracks_to_gt", "reentry_outcomes",
]
