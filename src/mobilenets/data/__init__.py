"""The data layer: IDX files, image folders, Fashion-MNIST canvases, COCO boxes and VOC masks."""
