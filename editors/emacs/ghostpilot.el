;;; ghostpilot.el --- Local AI completions and docstrings through eglot  -*- lexical-binding: t; -*-

;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1") (eglot "1.9"))
;; Keywords: languages, tools
;; URL: https://github.com/ghostpilot/ghostpilot

;;; Commentary:

;; Ghostpilot is a local, offline code assistant served over LSP by `ghostpilot serve'.
;; This file connects it to eglot (built into Emacs 29+, the `elpa-eglot' package or
;; GNU ELPA on Emacs 28).  Eglot has no inline completion, so the server answers
;; `textDocument/completion' with one AI item (the "completion fallback"):
;;
;; - `completion-at-point' (and company/corfu on top of it) offers that item; the
;;   advice below runs its `ghostpilot.accept' command after insertion, which the
;;   server's over-reliance tracking needs (eglot before 1.16 ignores item commands).
;; - `ghostpilot-suggest' previews the suggestion as ghost text; TAB accepts it,
;;   C-g or any other command drops it.  `ghostpilot-mode' asks automatically when
;;   typing pauses.
;; - `ghostpilot-generate-docstring' runs the server's "Generate docstring" code action
;;   (also offered by `eglot-code-actions').
;;
;; Setup:
;;   (add-to-list 'load-path "/path/to/ghostpilot/editors/emacs")
;;   (require 'ghostpilot)
;;   (setq ghostpilot-server-command '("/path/to/venv/bin/ghostpilot" "serve"))
;;   (ghostpilot-eglot-setup)
;;   (add-hook 'python-mode-hook #'eglot-ensure)

;;; Code:

(require 'cl-lib)
(require 'eglot)
(require 'jsonrpc)

(defgroup ghostpilot nil
  "Local AI code completion served by `ghostpilot serve'."
  :group 'tools
  :prefix "ghostpilot-")

(defcustom ghostpilot-server-command '("ghostpilot" "serve")
  "Command line that starts the Ghostpilot language server."
  :type '(repeat string))

(defcustom ghostpilot-modes '(python-mode python-ts-mode)
  "Major modes whose buffers eglot connects to Ghostpilot."
  :type '(repeat symbol))

(defcustom ghostpilot-settings nil
  "Server settings as a plist of camelCase keys, e.g. (:maxTokens 64 :nThreads 4).
Sent as initializationOptions and as the `ghostpilot' section of
`workspace/configuration' (unless `eglot-workspace-configuration' has its own)."
  :type 'plist)

(defcustom ghostpilot-request-timeout 120
  "Seconds to wait for a suggestion or a docstring; the first one loads the model."
  :type 'number)

(defcustom ghostpilot-idle-delay 0.5
  "Idle seconds after an edit before `ghostpilot-mode' asks for a suggestion."
  :type 'number)

(defface ghostpilot-suggestion-face '((t :inherit shadow))
  "Face of the ghost-text preview.")

(defconst ghostpilot--accept-command "ghostpilot.accept")
(defconst ghostpilot--docstring-command "ghostpilot.generateDocstring")

(defvar ghostpilot-status nil
  "Last `ghostpilot/status' notification.
A plist with :state, :model, :message and :latencyMs.")

(defclass ghostpilot-server (eglot-lsp-server) ()
  :documentation "Eglot connection to the Ghostpilot language server.")

(cl-defmethod eglot-initialization-options ((_server ghostpilot-server))
  (or ghostpilot-settings eglot--{}))

(cl-defmethod eglot-handle-request
  ((_server ghostpilot-server) (_method (eql workspace/configuration)) &key items)
  "Answer the `ghostpilot' section from `ghostpilot-settings'.
A section set in `eglot-workspace-configuration' wins."
  (let ((answers (cl-call-next-method)))
    (apply #'vector
           (cl-loop for item across items
                    for answer across answers
                    collect (if (and (null answer)
                                     (equal (plist-get item :section) "ghostpilot"))
                                (or ghostpilot-settings eglot--{})
                              answer)))))

(cl-defmethod eglot-handle-notification
  ((_server ghostpilot-server) (_method (eql ghostpilot/status))
   &rest params &key state message &allow-other-keys)
  "Remember the model state for the mode line; show an error once."
  (when (and (equal state "error") message
             (not (equal message (plist-get ghostpilot-status :message))))
    (message "[ghostpilot] %s" message))
  (setq ghostpilot-status params)
  (force-mode-line-update t))

;; Server commands (the docstring behind the code action, above all) run the model, which
;; can take longer than eglot's 10 s request timeout; their edits come back through
;; workspace/applyEdit for something the user just asked for, so no confirmation.
(cl-defmethod eglot-execute-command ((server ghostpilot-server) command arguments)
  "Run COMMAND on the Ghostpilot SERVER with `ghostpilot-request-timeout'."
  (let ((eglot-confirm-server-initiated-edits nil))
    (ghostpilot--execute server (list :command (format "%s" command) :arguments arguments))))

(when (cl-generic-p 'eglot-execute)     ; eglot 1.16+ runs commands through this
  (cl-defmethod eglot-execute :around ((_server ghostpilot-server) _action)
    (cl-progv '(eglot-confirm-server-initiated-edits jsonrpc-default-request-timeout)
        (list nil ghostpilot-request-timeout)
      (cl-call-next-method))))

;;;###autoload
(defun ghostpilot-eglot-setup ()
  "Make eglot start Ghostpilot for `ghostpilot-modes'.
Also track accepted suggestions and turn on `ghostpilot-mode'."
  (interactive)
  (setq eglot-server-programs
        (cons (cons ghostpilot-modes (cons 'ghostpilot-server ghostpilot-server-command))
              (cl-remove-if (lambda (entry) (eq (car-safe (cdr-safe entry)) 'ghostpilot-server))
                            eglot-server-programs)))
  (advice-add 'eglot-completion-at-point :filter-return #'ghostpilot--track-capf)
  (add-hook 'eglot-managed-mode-hook #'ghostpilot--maybe-enable))

(defun ghostpilot--server ()
  "The Ghostpilot server managing this buffer, or nil."
  (let ((server (eglot-current-server)))
    (and (cl-typep server 'ghostpilot-server) server)))

(defun ghostpilot--server-or-lose ()
  (or (ghostpilot--server)
      (user-error "[ghostpilot] This buffer is not managed by the Ghostpilot server (M-x eglot)")))

(defun ghostpilot--ai-command (item)
  "The accept command of ITEM when ITEM is the server's AI completion item."
  (let ((command (plist-get item :command)))
    (and (equal (plist-get command :command) ghostpilot--accept-command) command)))

(defun ghostpilot--execute (server command)
  "Run COMMAND (an LSP Command plist) on SERVER and return its result."
  (jsonrpc-request server :workspace/executeCommand
                   (list :command (plist-get command :command)
                         :arguments (or (plist-get command :arguments) []))
                   :timeout ghostpilot-request-timeout))

(defun ghostpilot--track-capf (capf)
  "Make the exit function of eglot's CAPF result run the AI item's command.
The command is taken off the item first, so eglot versions that run
item commands themselves do not run it twice."
  (let ((server (ghostpilot--server)))
    (if (not (and server (consp capf)))
        capf
      (let* ((props (copy-sequence (nthcdr 3 capf)))
             (exit (plist-get props :exit-function)))
        (append (cl-subseq capf 0 3)
                (plist-put props :exit-function
                           (lambda (proxy status)
                             (let* ((item (and (stringp proxy) (> (length proxy) 0)
                                               (get-text-property 0 'eglot--lsp-item proxy)))
                                    (command (ghostpilot--ai-command item)))
                               (when command (plist-put item :command nil))
                               (when exit (funcall exit proxy status))
                               (when (and command (memq status '(finished exact)))
                                 (ghostpilot--execute server command))))))))))

;;; Ghost-text preview

(defvar-local ghostpilot--overlay nil)
(defvar-local ghostpilot--item nil "The AI completion item shown in the preview.")
(defvar-local ghostpilot--tick nil "`buffer-chars-modified-tick' when the item arrived.")
(defvar-local ghostpilot--point nil)
(defvar-local ghostpilot--timer nil)

(defvar ghostpilot-preview-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "TAB") #'ghostpilot-accept)
    (define-key map (kbd "<tab>") #'ghostpilot-accept)
    (define-key map (kbd "C-g") #'ghostpilot-dismiss)
    map)
  "Active while a suggestion is shown.")

(defun ghostpilot--range-region (range)
  (funcall (if (fboundp 'eglot-range-region) 'eglot-range-region 'eglot--range-region) range))

(defun ghostpilot--find-ai-item (response)
  "The server's AI item in a completion RESPONSE (list or CompletionList)."
  (cl-find-if #'ghostpilot--ai-command
              (append (if (vectorp response) response (plist-get response :items)) nil)))

(defun ghostpilot--completion-params ()
  (append (eglot--TextDocumentPositionParams) (list :context (list :triggerKind 1))))

(defun ghostpilot-request-suggestion ()
  "Ask the server for the AI item at point and return it (nil when there is none)."
  (let ((server (ghostpilot--server-or-lose)))
    (eglot--signal-textDocument/didChange)
    (ghostpilot--find-ai-item
     (jsonrpc-request server :textDocument/completion (ghostpilot--completion-params)
                      :timeout ghostpilot-request-timeout))))

(defun ghostpilot--preview-text (item)
  "What accepting ITEM adds after point: its text minus what is already typed."
  (let* ((edit (plist-get item :textEdit))
         (start (car (ghostpilot--range-region (or (plist-get edit :range) (plist-get edit :insert)))))
         (text (plist-get edit :newText))
         (typed (buffer-substring-no-properties (min start (point)) (point))))
    (if (string-prefix-p typed text) (substring text (length typed)) text)))

(defun ghostpilot--show (item)
  "Preview ITEM as ghost text at point and activate `ghostpilot-preview-map'."
  (ghostpilot-dismiss)
  (setq ghostpilot--item item
        ghostpilot--tick (buffer-chars-modified-tick)
        ghostpilot--point (point)
        ghostpilot--overlay (make-overlay (point) (point) nil t nil))
  (let ((text (propertize (ghostpilot--preview-text item) 'face 'ghostpilot-suggestion-face)))
    (when (> (length text) 0)
      (put-text-property 0 1 'cursor t text))
    (overlay-put ghostpilot--overlay 'after-string text)
    (overlay-put ghostpilot--overlay 'priority 9000))
  (set-transient-map ghostpilot-preview-map #'ghostpilot--preview-valid-p))

(defun ghostpilot--preview-valid-p ()
  (and ghostpilot--item
       (eq (point) ghostpilot--point)
       (eq (buffer-chars-modified-tick) ghostpilot--tick)))

(defun ghostpilot-suggestion-shown-p ()
  "Whether a suggestion is previewed in this buffer."
  (and ghostpilot--overlay (overlay-buffer ghostpilot--overlay) t))

(defun ghostpilot-dismiss ()
  "Drop the previewed suggestion."
  (interactive)
  (when ghostpilot--overlay
    (delete-overlay ghostpilot--overlay))
  (setq ghostpilot--overlay nil ghostpilot--item nil))

(defun ghostpilot-suggest ()
  "Ask for a suggestion at point and preview it (waits for the answer)."
  (interactive)
  (let ((item (ghostpilot-request-suggestion)))
    (if item
        (ghostpilot--show item)
      (when (called-interactively-p 'interactive)
        (message "[ghostpilot] No suggestion here")))
    item))

(defun ghostpilot-accept ()
  "Insert the previewed suggestion and report the acceptance to the server.
Returns non-nil when something was inserted."
  (interactive)
  (let ((item ghostpilot--item)
        (server (ghostpilot--server)))
    (cond
     ((not (and item server (ghostpilot--preview-valid-p)))
      (ghostpilot-dismiss)
      nil)
     (t
      (ghostpilot-dismiss)
      (let* ((edit (plist-get item :textEdit))
             (region (ghostpilot--range-region (or (plist-get edit :range) (plist-get edit :insert)))))
        (goto-char (car region))
        (delete-region (car region) (cdr region))
        (insert (plist-get edit :newText))
        (eglot--signal-textDocument/didChange)
        (ghostpilot--execute server (ghostpilot--ai-command item))
        t)))))

(defun ghostpilot--suggest-async ()
  "Request a suggestion without blocking; show it if nothing changed meanwhile."
  (let ((server (ghostpilot--server))
        (buffer (current-buffer))
        (tick (buffer-chars-modified-tick))
        (pos (point)))
    ;; The server lets the newest request for a document win, so an older one still
    ;; in flight is stopped there; its late answer fails the checks below.
    (when (and server (not (ghostpilot-suggestion-shown-p)))
      (eglot--signal-textDocument/didChange)
      (jsonrpc-async-request
       server :textDocument/completion (ghostpilot--completion-params)
       :success-fn
       (lambda (response)
         (when (buffer-live-p buffer)
           (with-current-buffer buffer
             (let ((item (ghostpilot--find-ai-item response)))
               (when (and item (eq (point) pos)
                          (eq (buffer-chars-modified-tick) tick)
                          (eq (current-buffer) (window-buffer (selected-window))))
                 (ghostpilot--show item))))))
       :error-fn #'ignore
       :timeout-fn #'ignore
       :timeout ghostpilot-request-timeout))))

(defun ghostpilot--after-change (&rest _)
  (when ghostpilot--timer (cancel-timer ghostpilot--timer))
  (setq ghostpilot--timer
        (run-with-idle-timer ghostpilot-idle-delay nil
                             (let ((buffer (current-buffer)))
                               (lambda ()
                                 (when (buffer-live-p buffer)
                                   (with-current-buffer buffer
                                     (setq ghostpilot--timer nil)
                                     (ghostpilot--suggest-async))))))))

(defun ghostpilot--post-command ()
  (unless (or (ghostpilot--preview-valid-p) (not ghostpilot--overlay))
    (ghostpilot-dismiss)))

(defvar ghostpilot-mode-line
  '(:eval (when ghostpilot-status
            (format " GP[%s%s]" (plist-get ghostpilot-status :state)
                    (let ((ms (plist-get ghostpilot-status :latencyMs)))
                      (if (numberp ms) (format " %dms" ms) "")))))
  "Mode-line construct showing the model state and the last latency.")
(put 'ghostpilot-mode-line 'risky-local-variable t)

;;;###autoload
(define-minor-mode ghostpilot-mode
  "Ghost-text suggestions from Ghostpilot while typing (TAB accepts, C-g drops)."
  :lighter ghostpilot-mode-line
  :keymap (make-sparse-keymap)
  (if ghostpilot-mode
      (progn
        (add-hook 'after-change-functions #'ghostpilot--after-change nil t)
        (add-hook 'post-command-hook #'ghostpilot--post-command nil t))
    (remove-hook 'after-change-functions #'ghostpilot--after-change t)
    (remove-hook 'post-command-hook #'ghostpilot--post-command t)
    (ghostpilot-dismiss)))

(defun ghostpilot--maybe-enable ()
  "Turn `ghostpilot-mode' on in buffers that eglot connects to Ghostpilot."
  (when (and (bound-and-true-p eglot--managed-mode) (ghostpilot--server))
    (ghostpilot-mode 1)))

(defun ghostpilot-toggle ()
  "Turn suggestions on or off in the server (which also drops its completion item)."
  (interactive)
  (let* ((server (ghostpilot--server-or-lose))
         (enable (eq (plist-get ghostpilot-settings :enable) :json-false)))
    (setq ghostpilot-settings (plist-put ghostpilot-settings :enable (if enable t :json-false)))
    (jsonrpc-notify server :workspace/didChangeConfiguration
                    (list :settings (list :ghostpilot ghostpilot-settings)))
    (ghostpilot-mode (if enable 1 -1))
    (message "[ghostpilot] Suggestions %s" (if enable "on" "off"))))

;;; Docstrings

(defun ghostpilot--docstring-action-p (action)
  (let ((command (plist-get action :command)))
    (or (equal (if (stringp command) command (plist-get command :command))
               ghostpilot--docstring-command)
        (string-match-p "docstring" (downcase (or (plist-get action :title) ""))))))

(defun ghostpilot--code-actions (server)
  (eglot--signal-textDocument/didChange)
  (let ((pos (eglot--pos-to-lsp-position (point))))
    (append (jsonrpc-request server :textDocument/codeAction
                             (list :textDocument (eglot--TextDocumentIdentifier)
                                   :range (list :start pos :end pos)
                                   :context (list :diagnostics []))
                             :timeout ghostpilot-request-timeout)
            nil)))

(defun ghostpilot--run-action (server action)
  "Apply ACTION's edit and run its command; resolve it first when it has neither."
  (let ((eglot-confirm-server-initiated-edits nil))
    (if (stringp (plist-get action :command)) ; a bare Command
        (ghostpilot--execute server action)
      (when (and (not (plist-get action :edit)) (not (plist-get action :command))
                 (eglot--server-capable :codeActionProvider :resolveProvider))
        (setq action (jsonrpc-request server :codeAction/resolve action
                                      :timeout ghostpilot-request-timeout)))
      (when-let ((edit (plist-get action :edit)))
        ;; eglot 1.16+ takes the edit's origin as a second argument.
        (if (>= (car (func-arity 'eglot--apply-workspace-edit)) 2)
            (eglot--apply-workspace-edit edit 'ghostpilot-generate-docstring)
          (eglot--apply-workspace-edit edit)))
      (when-let ((command (plist-get action :command)))
        (ghostpilot--execute server command)))))

(defun ghostpilot-generate-docstring ()
  "Generate (or regenerate) the docstring of the function at point.
Uses the server's docstring code action, else its `ghostpilot.generateDocstring'
command.  Returns (VIA . TITLE): VIA is `code-action' or `command'."
  (interactive)
  (let* ((server (ghostpilot--server-or-lose))
         (actions (ghostpilot--code-actions server))
         (action (cl-find-if #'ghostpilot--docstring-action-p actions)))
    (cond
     (action
      (ghostpilot--run-action server action)
      (cons 'code-action (plist-get action :title)))
     ((member ghostpilot--docstring-command
              (append (eglot--server-capable :executeCommandProvider :commands) nil))
      (let ((eglot-confirm-server-initiated-edits nil))
        (ghostpilot--execute server (list :command ghostpilot--docstring-command
                                          :arguments (vector (plist-get (eglot--TextDocumentIdentifier) :uri)
                                                             (eglot--pos-to-lsp-position (point))))))
      (cons 'command ghostpilot--docstring-command))
     (t
      (user-error "[ghostpilot] No docstring action here (offered: %s)"
                  (mapconcat (lambda (a) (or (plist-get a :title) "?")) actions ", "))))))

(defun ghostpilot-reliance-report ()
  "Show the server's over-reliance report."
  (interactive)
  (let ((result (ghostpilot--execute (ghostpilot--server-or-lose)
                                     (list :command "ghostpilot.relianceReport"))))
    (with-current-buffer (get-buffer-create "*ghostpilot report*")
      (let ((inhibit-read-only t))
        (erase-buffer)
        (insert (if (stringp result) result (format "%S" result))))
      (special-mode)
      (display-buffer (current-buffer)))))

(provide 'ghostpilot)
;;; ghostpilot.el ends here
