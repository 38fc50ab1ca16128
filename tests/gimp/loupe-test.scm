; Script-Fu side of the GIMP plug-in tests; tests/gimp/gimp_test.cmake runs it in gimp-console.
; A case loads an image, calls the Loupe procedures non-interactively, exports the layer as GIMP
; itself converts it (the reference the SDK is run on outside GIMP), writes small facts files and
; saves XCFs. loupe-check then reads every XCF back in a second GIMP and writes what it holds.

(define (loupe-path dir name) (string-append dir "/" name))

(define (loupe-write dir name value)
  (let ((p (open-output-file (loupe-path dir name))))
    (display value p)
    (close-output-port p)))

; (ok . values) or (error message ...): a PDB error with its message, without ending the script.
(define (loupe-try thunk)
  (call/cc
    (lambda (k)
      (let ((old *error-hook*))
        (set! *error-hook* (lambda args (set! *error-hook* old) (k (cons 'error args))))
        (let ((r (thunk)))
          (set! *error-hook* old)
          (cons 'ok r))))))

(define (loupe-error-text r)
  (if (eq? (car r) 'error) (cadr r) "no error"))

(define (loupe-load path) (car (gimp-file-load RUN-NONINTERACTIVE path path)))
(define (loupe-layer img) (car (gimp-image-get-active-layer img)))

(define (loupe-save img dir name)
  (gimp-xcf-save 0 img (loupe-layer img) (loupe-path dir name) (loupe-path dir name)))

; The layer as the plug-in must see it: 8-bit RGB, transparency over white, converted by GIMP.
(define (loupe-export-reference img dir name)
  (let ((dup (car (gimp-image-duplicate img))))
    (gimp-context-push)
    (gimp-context-set-background '(255 255 255))
    (if (not (= (car (gimp-image-get-precision dup)) PRECISION-U8-GAMMA))
        (gimp-image-convert-precision dup PRECISION-U8-GAMMA))
    (if (not (= (car (gimp-image-base-type dup)) RGB)) (gimp-image-convert-rgb dup))
    (let ((flat (car (gimp-image-flatten dup))))
      (file-ppm-save RUN-NONINTERACTIVE dup flat (loupe-path dir name) name 1))
    (gimp-context-pop)
    (gimp-image-delete dup)))

(define (loupe-mode img)
  (string-append (number->string (car (gimp-image-base-type img))) " "
                 (number->string (car (gimp-image-get-precision img)))))

(define (loupe-done dir) (loupe-write dir "done.txt" "done"))

; Caption twice (the second with a text layer): the comment, one model load for both calls.
(define (loupe-case-caption image dir)
  (let* ((img (loupe-load image))
         (drw (loupe-layer img)))
    (loupe-export-reference img dir "caption.ppm")
    (let* ((first (car (plug-in-loupe-caption RUN-NONINTERACTIVE img drw 0 0)))
           (second (car (plug-in-loupe-caption RUN-NONINTERACTIVE img drw 0 1))))
      (loupe-write dir "returned.txt" first)
      (loupe-write dir "same.txt" (if (equal? first second) "same" "different")))
    (let ((info (plug-in-loupe-info RUN-NONINTERACTIVE)))
      (loupe-write dir "loads.txt" (number->string (car info)))
      (loupe-write dir "info.txt" (cadr info)))
    (loupe-save img dir "caption.xcf")
    (loupe-done dir)))

(define (loupe-case-detect image dir)
  (let* ((img (loupe-load image))
         (drw (loupe-layer img)))
    (loupe-export-reference img dir "detect.ppm")
    (loupe-write dir "count.txt" (number->string (car (plug-in-loupe-detect RUN-NONINTERACTIVE img drw))))
    (loupe-save img dir "detect.xcf")
    (loupe-done dir)))

; Boxes ("ground") and outlines ("segment") each replace the selection.
(define (loupe-case-select image dir)
  (let* ((img (loupe-load image))
         (drw (loupe-layer img)))
    (loupe-export-reference img dir "select.ppm")
    (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 0 0 5 5)
    (loupe-write dir "ground-count.txt"
                 (number->string (car (plug-in-loupe-select RUN-NONINTERACTIVE img drw "a red circle" 0))))
    (loupe-save img dir "ground.xcf")
    (loupe-write dir "segment-count.txt"
                 (number->string (car (plug-in-loupe-select RUN-NONINTERACTIVE img drw "a red circle" 1))))
    (loupe-save img dir "segment.xcf")
    (loupe-done dir)))

; Grayscale, indexed, 16-bit, linear float and a layer with transparent pixels: the plug-in reads
; them as 8-bit RGB (same caption as GIMP's own conversion) and leaves the image as it was.
(define (loupe-variant image dir name change)
  (let* ((img (loupe-load image)))
    (change img (loupe-layer img))
    (loupe-write dir (string-append name ".before.txt") (loupe-mode img))
    (loupe-export-reference img dir (string-append name ".ppm"))
    (plug-in-loupe-caption RUN-NONINTERACTIVE img (loupe-layer img) 0 0)
    (loupe-save img dir (string-append name ".xcf"))))

(define (loupe-case-modes image dir)
  (loupe-variant image dir "gray" (lambda (img drw) (gimp-image-convert-grayscale img)))
  (loupe-variant image dir "indexed"
                 (lambda (img drw) (gimp-image-convert-indexed img CONVERT-DITHER-NONE CONVERT-PALETTE-GENERATE 64 FALSE FALSE "")))
  (loupe-variant image dir "u16" (lambda (img drw) (gimp-image-convert-precision img PRECISION-U16-GAMMA)))
  (loupe-variant image dir "float" (lambda (img drw) (gimp-image-convert-precision img PRECISION-FLOAT-LINEAR)))
  (loupe-variant image dir "alpha"
                 (lambda (img drw)
                   (gimp-layer-add-alpha drw)
                   (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 40 30 200 120)
                   (gimp-drawable-edit-clear drw)
                   (gimp-selection-none img)))
  (loupe-done dir))

; Bad input: each call fails with a sentence for the person, and the image is left as it was.
(define (loupe-case-bad-input image dir)
  (let* ((img (loupe-load image))
         (drw (loupe-layer img))
         (w (car (gimp-image-width img)))
         (h (car (gimp-image-height img)))
         (channel (car (gimp-channel-new img w h "a channel" 50 '(0 0 0))))
         (small (car (gimp-layer-new img 40 40 RGBA-IMAGE "small" 100 LAYER-MODE-NORMAL))))
    (gimp-image-insert-channel img channel 0 0)
    (gimp-image-insert-layer img small 0 0)
    (loupe-write dir "before.txt" (loupe-mode img))
    (gimp-selection-none img)
    (loupe-write dir "no-selection.txt"
                 (loupe-error-text (loupe-try (lambda () (plug-in-loupe-inpaint RUN-NONINTERACTIVE img drw "a cat" "" 2 7.5 1.0 1 1 4.0 8.0)))))
    (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 100 100 50 50)
    (loupe-write dir "selection-outside.txt"
                 (loupe-error-text (loupe-try (lambda () (plug-in-loupe-inpaint RUN-NONINTERACTIVE img small "a cat" "" 2 7.5 1.0 1 1 4.0 8.0)))))
    (loupe-write dir "channel.txt"
                 (loupe-error-text (loupe-try (lambda () (plug-in-loupe-caption RUN-NONINTERACTIVE img channel 0 0)))))
    (loupe-write dir "empty-text.txt"
                 (loupe-error-text (loupe-try (lambda () (plug-in-loupe-select RUN-NONINTERACTIVE img drw "  " 0)))))
    (loupe-write dir "bad-detail.txt"
                 (loupe-error-text (loupe-try (lambda () (plug-in-loupe-caption RUN-NONINTERACTIVE img drw 7 0)))))
    (loupe-write dir "after.txt" (loupe-mode img))
    (loupe-save img dir "bad.xcf")
    (loupe-done dir)))

; The dialogs (full GIMP under Xvfb, LOUPE_GIMP_AUTO_OK presses OK): the same results as batch.
; Dialogs that need text start from the last values, set by a non-interactive call first.
(define (loupe-case-interactive image dir)
  (let* ((img (loupe-load image))
         (drw (loupe-layer img)))
    (gimp-display-new img)
    (loupe-export-reference img dir "interactive.ppm")
    (plug-in-loupe-select RUN-NONINTERACTIVE img drw "a red circle" 0)
    (gimp-selection-none img)
    (loupe-write dir "returned.txt" (car (plug-in-loupe-caption RUN-INTERACTIVE img drw 0 0)))
    (loupe-write dir "count.txt" (number->string (car (plug-in-loupe-detect RUN-INTERACTIVE img drw))))
    (loupe-write dir "ground-count.txt" (number->string (car (plug-in-loupe-select RUN-INTERACTIVE img drw "" 0))))
    (loupe-write dir "repeat.txt" (car (plug-in-loupe-caption RUN-WITH-LAST-VALS img drw 0 0)))
    (plug-in-loupe-inpaint RUN-NONINTERACTIVE img drw "a cat" "" 2 7.5 1.0 1 1 4.0 8.0)
    (plug-in-loupe-inpaint RUN-INTERACTIVE img drw "" "" 2 7.5 1.0 1 1 4.0 8.0)
    (plug-in-loupe-generate RUN-NONINTERACTIVE img drw "a dog" "" 64 64 2 7.5 1)
    (plug-in-loupe-generate RUN-INTERACTIVE img drw "" "" 64 64 2 7.5 1)
    (loupe-write dir "loads.txt" (number->string (car (plug-in-loupe-info RUN-NONINTERACTIVE))))
    (gimp-selection-none img)
    (loupe-save img dir "interactive.xcf")
    (loupe-done dir)))

; Stable Diffusion on the tiny fixtures (gimp_test.cmake fails the case if the SDK does not open them).
; An empty prompt is unconditional generation (as in diffusers and the web UIs), not an error.
(define (loupe-case-generate image dir)
  (let* ((img (loupe-load image))
         (drw (loupe-layer img))
         (r (plug-in-loupe-generate RUN-NONINTERACTIVE img drw "a red square" "" 64 48 2 7.5 42))
         (empty (loupe-try (lambda () (plug-in-loupe-generate RUN-NONINTERACTIVE img drw "" "" 64 48 2 7.5 7)))))
    (loupe-write dir "seed.txt" (number->string (cadr r)))
    (loupe-write dir "empty-prompt.txt"
                 (if (eq? (car empty) 'ok) (number->string (cadr (cdr empty))) (loupe-error-text empty)))
    (loupe-save img dir "generate.xcf")
    (loupe-done dir)))

; The dialogs as the task descriptions make them (full GIMP under Xvfb; LOUPE_GIMP_DIALOG_DUMP writes
; what each shows). On a fresh profile every dialog shows the session's defaults and is answered
; Cancel (nothing changes: dialogs.xcf). Then Detect's dialog is answered OK: it sends the parameter
; extra_param.c added to the task table (preloaded), which no line of the plug-in names. Then
; Caption's, as a person would: another task ("Detailed caption"), a parameter changed, another model
; (the one the scan found): each rebuilds the dialog, and the change is kept.
(define (loupe-auto-response text) (gimp-attach-parasite (list "loupe-gimp-auto-response" 0 text)))

(define (loupe-case-dialogs image dir)
  (let* ((img (loupe-load image))
         (drw (loupe-layer img)))
    (gimp-display-new img)
    (loupe-auto-response "cancel")
    (loupe-write dir "cancel.txt"
                 (loupe-error-text (loupe-try (lambda () (plug-in-loupe-caption RUN-INTERACTIVE img drw 0 0)))))
    (loupe-try (lambda () (plug-in-loupe-detect RUN-INTERACTIVE img drw)))
    (loupe-try (lambda () (plug-in-loupe-select RUN-INTERACTIVE img drw "" 0)))
    (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 100 80 120 90)
    (loupe-try (lambda () (plug-in-loupe-inpaint RUN-INTERACTIVE img drw "" "" 2 7.5 1.0 1 1 4.0 8.0)))
    (loupe-try (lambda () (plug-in-loupe-generate RUN-INTERACTIVE img drw "" "" 64 64 2 7.5 1)))
    (gimp-selection-none img)
    (loupe-save img dir "dialogs.xcf")
    (loupe-auto-response "ok")
    (loupe-write dir "count.txt" (number->string (car (plug-in-loupe-detect RUN-INTERACTIVE img drw))))
    (loupe-auto-response "detail=1 max_new_tokens=20 model=1 ok")
    (loupe-write dir "rebuilt.txt"
                 (loupe-error-text (loupe-try (lambda () (plug-in-loupe-caption RUN-INTERACTIVE img drw 0 0)))))
    (loupe-done dir)))

(define (loupe-case-inpaint image dir)
  (let* ((img (loupe-load image))
         (drw (loupe-layer img)))
    (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 100 80 120 90)
    (let* ((layer (car (plug-in-loupe-inpaint RUN-NONINTERACTIVE img drw "a blue ball" "" 2 7.5 1.0 42 1 4.0 8.0)))
           (pixel (lambda (d x y) (vector->list (cadr (gimp-drawable-get-pixel d x y)))))
           (rgb (lambda (p) (list (car p) (cadr p) (caddr p)))))
      ; Far from the selection the new layer is the layer itself (opaque); inside it is repainted.
      (loupe-write dir "outside.txt"
                   (if (and (equal? (pixel layer 5 5) (append (pixel drw 5 5) '(255)))
                            (equal? (pixel layer 700 450) (append (pixel drw 700 450) '(255))))
                       "same" "different"))
      (loupe-write dir "inside.txt"
                   (if (equal? (rgb (pixel layer 160 125)) (pixel drw 160 125)) "same" "different")))
    (loupe-save img dir "inpaint.xcf")
    (loupe-done dir)))

(define (loupe-case-edit image dir)
  (let* ((img (loupe-load image))
         (drw (loupe-layer img)))
    (loupe-write dir "empty-target.txt"
                 (loupe-error-text (loupe-try (lambda () (plug-in-loupe-edit RUN-NONINTERACTIVE img drw "  " "a cat" 4 4.0 2 1.0 42)))))
    (let* ((result (plug-in-loupe-edit RUN-NONINTERACTIVE img drw "the red car" "a blue bicycle" 4 4.0 2 1.0 42)))
      (loupe-write dir "regions.txt" (number->string (cadr result))))
    (loupe-save img dir "edit.xcf")
    (loupe-done dir)))

; The checker: for every X.xcf in dir, X.comment.txt, X.paths.txt (names, one a line),
; X.selection.txt ("non-empty x1 y1 x2 y2"), X.layers.txt ("name|w|h|x|y|text" from the top),
; X.mode.txt ("base-type precision").
(define (loupe-check-xcf file)
  (let* ((img (car (gimp-xcf-load 0 file file)))
         (base (substring file 0 (- (string-length file) 4)))
         (out (lambda (name value)
                (let ((p (open-output-file (string-append base "." name ".txt"))))
                  (display value p)
                  (close-output-port p))))
         (comment (loupe-try (lambda () (gimp-image-get-parasite img "gimp-comment"))))
         (paths (vector->list (cadr (gimp-image-get-vectors img))))
         (layers (vector->list (cadr (gimp-image-get-layers img))))
         (sel (gimp-selection-bounds img)))
    (out "comment"
         (if (eq? (car comment) 'ok)
             (let ((data (caddr (car (cdr comment)))))
               ; the parasite holds the text and its terminating NUL
               (if (and (> (string-length data) 0)
                        (char=? (string-ref data (- (string-length data) 1)) (integer->char 0)))
                   (substring data 0 (- (string-length data) 1))
                   data))
             ""))
    (out "paths" (apply string-append (map (lambda (v) (string-append (car (gimp-item-get-name v)) "\n")) paths)))
    (out "selection" (string-append (number->string (car sel)) " " (number->string (cadr sel)) " "
                                    (number->string (caddr sel)) " " (number->string (cadddr sel)) " "
                                    (number->string (car (cddddr sel)))))
    (out "layers"
         (apply string-append
                (map (lambda (l)
                       (let ((off (gimp-drawable-offsets l)))
                         (string-append (car (gimp-item-get-name l)) "|"
                                        (number->string (car (gimp-drawable-width l))) "|"
                                        (number->string (car (gimp-drawable-height l))) "|"
                                        (number->string (car off)) "|" (number->string (cadr off)) "|"
                                        (number->string (car (gimp-item-is-text-layer l))) "\n")))
                     layers)))
    (out "mode" (loupe-mode img))
    (gimp-image-delete img)))

(define (loupe-check dir)
  (for-each loupe-check-xcf (cadr (file-glob (loupe-path dir "*.xcf") 1)))
  (loupe-write dir "checked.txt" "checked"))
