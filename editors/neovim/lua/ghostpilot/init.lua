--- Ghostpilot for Neovim: local AI completions and docstrings over plain LSP.
---
--- Neovim 0.12+ gets ghost text from `vim.lsp.inline_completion`. Older versions
--- (0.7 through 0.11) use the server's completion fallback: the server answers
--- `textDocument/completion` with one AI item, which this module previews as virtual
--- text and inserts on accept. Either way the item's `ghostpilot.accept` command is
--- executed after insertion, so the server can track accepted AI code.
---
--- Usage: `require('ghostpilot').setup({ cmd = { '/path/to/venv/bin/ghostpilot', 'serve' } })`

local api = vim.api

local M = {}

local AI_COMMAND = 'ghostpilot.accept'
local DOCSTRING_COMMAND = 'ghostpilot.generateDocstring'
local NAME = 'ghostpilot'
local namespace = api.nvim_create_namespace('ghostpilot')

--- Defaults; `setup(opts)` deep-merges over these.
M.defaults = {
  cmd = { 'ghostpilot', 'serve' },
  filetypes = { 'python' },
  root_markers = { 'pyproject.toml', 'setup.py', 'setup.cfg', '.git' },
  --- `ghostpilot.*` server settings in camelCase (model, nThreads, maxTokens, ...). Sent as
  --- initializationOptions and answered to `workspace/configuration`.
  settings = {},
  --- 'auto': inline completion on Neovim 0.12+, the completion fallback before.
  --- 'fallback': always the completion fallback (virtual-text preview from this module).
  mode = 'auto',
  --- Fallback mode: ask for a suggestion when typing pauses for `debounce_ms`.
  auto_trigger = true,
  debounce_ms = 400,
  --- Insert-mode keys; set one to false to leave it unmapped. `accept` falls through to
  --- the key itself when no suggestion is shown.
  keymaps = {
    accept = '<Tab>',
    dismiss = '<C-]>',
    suggest = '<M-\\>',
  },
}

M.config = vim.deepcopy(M.defaults)
M.enabled = true
--- Last `ghostpilot/status` notification: { state, model, message?, latencyMs? }.
M.status = { state = 'stopped' }

--- Per-buffer fallback state: pending request and the suggestion on screen.
local buffers = {}
--- Clients started on Neovim 0.7 (no vim.lsp.start there), by root directory.
local clients_by_root = {}
local warned = {}

local function has(version)
  return vim.fn.has('nvim-' .. version) == 1
end

local function notify_once(key, message, level)
  if warned[key] then
    return
  end
  warned[key] = true
  vim.notify('ghostpilot: ' .. message, level or vim.log.levels.WARN)
end

--- Call a client method; 0.11 made them methods (`client:request`), before they were fields.
local function call(client, method, ...)
  if has('0.11') then
    return client[method](client, ...)
  end
  return client[method](...)
end

local function uses_inline()
  return M.config.mode ~= 'fallback' and vim.lsp.inline_completion ~= nil
end

local function state(bufnr)
  buffers[bufnr] = buffers[bufnr] or {}
  return buffers[bufnr]
end

local function resolve_buf(bufnr)
  if bufnr == nil or bufnr == 0 then
    return api.nvim_get_current_buf()
  end
  return bufnr
end

local function all_clients()
  if vim.lsp.get_clients then
    return vim.lsp.get_clients({ name = NAME })
  end
  return vim.lsp.get_active_clients()
end

--- The Ghostpilot client attached to `bufnr`, or nil.
function M.get_client(bufnr)
  bufnr = resolve_buf(bufnr)
  for _, client in pairs(all_clients()) do
    if client.name == NAME and vim.lsp.buf_is_attached(bufnr, client.id) then
      return client
    end
  end
  return nil
end

local function server_capabilities(client)
  return client.server_capabilities or {}
end

--- Byte column of an LSP position, honouring the client's offset encoding.
local function byte_col(bufnr, position, encoding)
  local line = api.nvim_buf_get_lines(bufnr, position.line, position.line + 1, false)[1] or ''
  if encoding == 'utf-8' then
    return math.min(position.character, #line)
  end
  local ok, col
  if has('0.11') then
    ok, col = pcall(vim.str_byteindex, line, encoding, position.character, false)
  else
    ok, col = pcall(vim.str_byteindex, line, position.character, encoding == 'utf-16')
  end
  if not ok then
    return #line
  end
  return col
end

local function root_dir(bufnr)
  local name = api.nvim_buf_get_name(bufnr)
  local dir = name ~= '' and vim.fn.fnamemodify(name, ':p:h') or vim.fn.getcwd()
  for _, marker in ipairs(M.config.root_markers) do
    local found = vim.fn.finddir(marker, dir .. ';')
    if found ~= '' then
      return vim.fn.fnamemodify(found, ':p:h:h') -- ':p' adds a slash to directories
    end
    found = vim.fn.findfile(marker, dir .. ';')
    if found ~= '' then
      return vim.fn.fnamemodify(found, ':p:h')
    end
  end
  return dir
end

local function capabilities()
  local caps = vim.lsp.protocol.make_client_capabilities()
  if not uses_inline() and caps.textDocument then
    -- Without inline completion the server must send its completion fallback item.
    caps.textDocument.inlineCompletion = nil
  end
  return caps
end

--- Strip the parts of a suggestion the user has already typed (the range may start
--- before the cursor), so the preview shows only what accepting would add.
local function preview_lines(bufnr, edit, encoding, cursor)
  local range = edit.range or edit.insert
  local start_col = byte_col(bufnr, range.start, encoding)
  local text = edit.newText
  if range.start.line == cursor[1] - 1 and start_col < cursor[2] then
    local typed = api.nvim_buf_get_lines(bufnr, cursor[1] - 1, cursor[1], false)[1]:sub(start_col + 1, cursor[2])
    if text:sub(1, #typed) == typed then
      text = text:sub(#typed + 1)
    end
  end
  return vim.split(text, '\n', { plain = true })
end

local function clear_preview(bufnr)
  local s = buffers[bufnr]
  if s and s.extmark then
    pcall(api.nvim_buf_del_extmark, bufnr, namespace, s.extmark)
    s.extmark = nil
  end
end

local function show_preview(bufnr, s, encoding)
  clear_preview(bufnr)
  local lines = preview_lines(bufnr, s.item.textEdit, encoding, s.cursor)
  while #lines > 1 and lines[#lines] == '' do
    table.remove(lines)
  end
  local row, col = s.cursor[1] - 1, s.cursor[2]
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  local pos = 'eol'
  if has('0.10') then
    pos = 'inline'
  elseif col >= #line then
    pos = 'overlay'
  end
  local virt_lines = {}
  for i = 2, #lines do
    virt_lines[#virt_lines + 1] = { { lines[i], 'GhostpilotSuggestion' } }
  end
  local ok, id = pcall(api.nvim_buf_set_extmark, bufnr, namespace, row, math.min(col, #line), {
    virt_text = { { lines[1], 'GhostpilotSuggestion' } },
    virt_text_pos = pos,
    virt_lines = #virt_lines > 0 and virt_lines or nil,
    hl_mode = 'combine',
  })
  if ok then
    s.extmark = id
  end
end

--- The server's AI item in a completion result (identified by its accept command).
function M.find_ai_item(result)
  if type(result) ~= 'table' then
    return nil
  end
  for _, item in ipairs(result.items or result) do
    local command = item.command
    if type(command) == 'table' and command.command == AI_COMMAND and item.textEdit then
      return item
    end
  end
  return nil
end

--- Drop the suggestion shown in `bufnr` and cancel its pending request.
function M.dismiss(bufnr)
  bufnr = resolve_buf(bufnr)
  local s = buffers[bufnr]
  if not s then
    return
  end
  if s.request_id and s.client_id then
    local client = vim.lsp.get_client_by_id(s.client_id)
    if client then
      pcall(call, client, 'cancel_request', s.request_id)
    end
  end
  clear_preview(bufnr)
  s.request_id, s.item = nil, nil
end

--- Whether a suggestion is currently shown in `bufnr`.
function M.has_suggestion(bufnr)
  local s = buffers[resolve_buf(bufnr)]
  return s ~= nil and s.item ~= nil
end

--- Ask the server for a suggestion at the cursor (fallback mode) and preview it.
--- `opts.on_result(item|nil, err|nil)` is called when the answer arrives.
function M.suggest(opts)
  opts = opts or {}
  local bufnr = resolve_buf(opts.bufnr)
  local done = opts.on_result or function() end
  if uses_inline() then
    return done(nil, 'vim.lsp.inline_completion shows suggestions on this Neovim')
  end
  local client = M.get_client(bufnr)
  if not client then
    return done(nil, 'no ghostpilot client attached to this buffer')
  end
  M.dismiss(bufnr)
  local s = state(bufnr)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = 1 }
  local tick = api.nvim_buf_get_changedtick(bufnr)
  local cursor = api.nvim_win_get_cursor(0)
  local ok, request_id
  ok, request_id = call(client, 'request', 'textDocument/completion', params, vim.schedule_wrap(function(err, result)
    if s.request_id ~= request_id then -- dismissed, or superseded by a newer request
      return done(nil, 'the request was superseded or dismissed')
    end
    s.request_id = nil
    if err then
      return done(nil, err.message or tostring(err))
    end
    if api.nvim_buf_get_changedtick(bufnr) ~= tick then
      return done(nil, 'the buffer changed while the suggestion was computed')
    end
    local item = M.find_ai_item(result)
    if not item then
      return done(nil, nil)
    end
    s.item, s.client_id, s.tick, s.cursor = item, client.id, tick, cursor
    if api.nvim_get_current_buf() == bufnr then
      show_preview(bufnr, s, client.offset_encoding)
    end
    done(item, nil)
  end), bufnr)
  if ok then
    s.request_id, s.client_id = request_id, client.id
  else
    done(nil, 'the ghostpilot server is not running')
  end
end

local function execute_command(client, command, bufnr, on_done)
  local params = { command = command.command, arguments = command.arguments }
  call(client, 'request', 'workspace/executeCommand', params, vim.schedule_wrap(function(err, result)
    if err then
      vim.notify(('ghostpilot: %s failed: %s'):format(command.command, err.message or vim.inspect(err)), vim.log.levels.ERROR)
    end
    if on_done then
      on_done(err, result)
    end
  end), bufnr)
end

--- Whether a suggestion is shown in `bufnr` and the buffer has not changed since.
function M.can_accept(bufnr)
  bufnr = resolve_buf(bufnr)
  local s = buffers[bufnr]
  return s ~= nil and s.item ~= nil and api.nvim_buf_get_changedtick(bufnr) == s.tick
end

--- Insert the shown suggestion, put the cursor after it, and report the acceptance.
--- Returns false (and changes nothing) when no current suggestion is shown.
function M.accept(opts)
  opts = opts or {}
  local bufnr = resolve_buf(opts.bufnr)
  if uses_inline() then
    return vim.lsp.inline_completion.get({ bufnr = bufnr }) ~= false
  end
  if not M.can_accept(bufnr) then
    M.dismiss(bufnr)
    return false
  end
  local s = buffers[bufnr]
  local client = vim.lsp.get_client_by_id(s.client_id)
  local item = s.item
  M.dismiss(bufnr)
  if not client then
    return false
  end
  local edit = item.textEdit
  local range = edit.range or edit.insert
  local start_col = byte_col(bufnr, range.start, client.offset_encoding)
  vim.lsp.util.apply_text_edits({ { range = range, newText = edit.newText } }, bufnr, client.offset_encoding)
  local lines = vim.split(edit.newText, '\n', { plain = true })
  local row = range.start.line + #lines
  local col = (#lines == 1 and start_col or 0) + #lines[#lines]
  local win = vim.fn.bufwinid(bufnr)
  if win ~= -1 then
    pcall(api.nvim_win_set_cursor, win, { row, col })
  end
  if item.command then
    execute_command(client, item.command, bufnr, function(err, result)
      M.last_accepted = { id = item.command.arguments and item.command.arguments[1], result = result, error = err }
      if opts.on_accepted then
        opts.on_accepted(err, result)
      end
    end)
  end
  return true
end

local function is_docstring_action(action)
  local command = type(action.command) == 'table' and action.command.command or action.command
  return command == DOCSTRING_COMMAND or (type(action.title) == 'string' and action.title:lower():find('docstring') ~= nil)
end

local function run_code_action(client, action, bufnr, on_done)
  if type(action.command) == 'string' then -- a bare Command
    return execute_command(client, action, bufnr, on_done)
  end
  local caps = server_capabilities(client).codeActionProvider
  if not action.edit and not action.command and type(caps) == 'table' and caps.resolveProvider then
    return call(client, 'request', 'codeAction/resolve', action, vim.schedule_wrap(function(err, resolved)
      if err or not resolved then
        return on_done(err or { message = 'empty codeAction/resolve answer' })
      end
      run_code_action(client, resolved, bufnr, on_done)
    end), bufnr)
  end
  if action.edit then
    vim.lsp.util.apply_workspace_edit(action.edit, client.offset_encoding)
  end
  if action.command then
    return execute_command(client, action.command, bufnr, on_done)
  end
  on_done(nil, nil)
end

--- Generate (or regenerate) the docstring of the function at the cursor through the
--- server's "Generate docstring" code action; falls back to the bare command.
--- `opts.on_done(err|nil, info)`: info.via is 'codeAction' or 'command', info.title the action.
function M.generate_docstring(opts)
  opts = opts or {}
  local bufnr = resolve_buf(opts.bufnr)
  local done = opts.on_done or function(err)
    if err then
      vim.notify('ghostpilot: ' .. (err.message or tostring(err)), vim.log.levels.WARN)
    end
  end
  local client = M.get_client(bufnr)
  if not client then
    return done({ message = 'no ghostpilot client attached to this buffer' })
  end
  local params = vim.lsp.util.make_range_params(0, client.offset_encoding)
  params.context = { diagnostics = {} }
  local function on_actions(err, actions)
    if err then
      return done(err)
    end
    local titles = {}
    for _, action in ipairs(actions or {}) do
      titles[#titles + 1] = action.title
      if is_docstring_action(action) then
        return run_code_action(client, action, bufnr, function(run_err)
          done(run_err, { via = 'codeAction', title = action.title })
        end)
      end
    end
    local commands = (server_capabilities(client).executeCommandProvider or {}).commands or {}
    if vim.tbl_contains(commands, DOCSTRING_COMMAND) then
      local command = { command = DOCSTRING_COMMAND, arguments = { params.textDocument.uri, params.range.start } }
      return execute_command(client, command, bufnr, function(run_err)
        done(run_err, { via = 'command', title = DOCSTRING_COMMAND, offered = titles })
      end)
    end
    if not server_capabilities(client).codeActionProvider then
      return done({ message = 'the server offers no code actions and no ' .. DOCSTRING_COMMAND .. ' command' }, { offered = titles })
    end
    done({ message = 'no docstring action here (code actions offered: ' .. table.concat(titles, ', ') .. ')' }, { offered = titles })
  end
  if not server_capabilities(client).codeActionProvider then
    return on_actions(nil, {})
  end
  call(client, 'request', 'textDocument/codeAction', params, vim.schedule_wrap(on_actions), bufnr)
end

--- Run a Ghostpilot server command and show its answer in a scratch buffer.
function M.show_command(command, arguments)
  local client = M.get_client(0)
  if not client then
    return vim.notify('ghostpilot: no client attached to this buffer', vim.log.levels.WARN)
  end
  execute_command(client, { command = command, arguments = arguments }, 0, function(err, result)
    if err then
      return
    end
    local text = type(result) == 'string' and result or vim.inspect(result)
    vim.cmd('new')
    local buf = api.nvim_get_current_buf()
    api.nvim_buf_set_lines(buf, 0, -1, false, vim.split(text, '\n', { plain = true }))
    vim.bo[buf].buftype, vim.bo[buf].bufhidden, vim.bo[buf].filetype = 'nofile', 'wipe', 'markdown'
  end)
end

local function push_settings()
  for _, client in pairs(all_clients()) do
    if client.name == NAME then
      client.config.settings = { ghostpilot = M.config.settings }
      call(client, 'notify', 'workspace/didChangeConfiguration', { settings = client.config.settings })
    end
  end
end

--- Turn suggestions on or off, here and in the server (which also stops its completion item).
function M.toggle(enable)
  if enable == nil then
    enable = not M.enabled
  end
  M.enabled = enable
  M.config.settings = vim.tbl_extend('force', M.config.settings, { enable = enable })
  if not enable then
    for bufnr in pairs(buffers) do
      M.dismiss(bufnr)
    end
  end
  if uses_inline() then
    vim.lsp.inline_completion.enable(enable)
  end
  push_settings()
  vim.notify('ghostpilot: suggestions ' .. (enable and 'on' or 'off'))
end

--- One short string for a statusline: model state and the last latency.
function M.statusline()
  local s = M.status
  local text = 'ghostpilot: ' .. (s.state or '?')
  if s.latencyMs then
    text = text .. (' %dms'):format(s.latencyMs)
  end
  return text
end

local function on_status(_, result)
  if type(result) == 'table' then
    M.status = result
    if result.state == 'error' and result.message then
      notify_once('status-error:' .. result.message, result.message, vim.log.levels.ERROR)
    end
    pcall(api.nvim_exec_autocmds, 'User', { pattern = 'GhostpilotStatus', modeline = false })
  end
end

local debounce_timer
local function schedule_suggest(bufnr)
  if not (M.enabled and M.config.auto_trigger) then
    return
  end
  if debounce_timer then
    debounce_timer:stop()
  end
  debounce_timer = debounce_timer or (vim.uv or vim.loop).new_timer()
  debounce_timer:start(M.config.debounce_ms, 0, vim.schedule_wrap(function()
    if api.nvim_get_current_buf() == bufnr and api.nvim_get_mode().mode:sub(1, 1) == 'i' then
      M.suggest({ bufnr = bufnr })
    end
  end))
end

local function map_keys(bufnr)
  local keys = M.config.keymaps
  local function map(lhs, rhs, desc, expr)
    if lhs then
      vim.keymap.set('i', lhs, rhs, { buffer = bufnr, desc = desc, expr = expr })
    end
  end
  -- An expression mapping: the key keeps its meaning when nothing is shown. The buffer
  -- cannot change inside an expression, so the fallback insertion runs right after.
  map(keys.accept, function()
    if uses_inline() then
      return vim.lsp.inline_completion.get({ bufnr = bufnr }) and '' or keys.accept
    end
    if M.can_accept(bufnr) then
      vim.schedule(function()
        M.accept({ bufnr = bufnr })
      end)
      return ''
    end
    return keys.accept
  end, 'Ghostpilot: accept the suggestion', true)
  map(keys.dismiss, function()
    M.dismiss(bufnr)
  end, 'Ghostpilot: dismiss the suggestion')
  map(keys.suggest, function()
    M.suggest({ bufnr = bufnr })
  end, 'Ghostpilot: ask for a suggestion')
end

local function on_attach(client, bufnr)
  if uses_inline() then
    vim.lsp.inline_completion.enable(M.enabled, { bufnr = bufnr })
  else
    local group = api.nvim_create_augroup('ghostpilot_buf_' .. bufnr, { clear = true })
    api.nvim_create_autocmd('TextChangedI', {
      group = group,
      buffer = bufnr,
      callback = function()
        M.dismiss(bufnr)
        schedule_suggest(bufnr)
      end,
    })
    api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
      group = group,
      buffer = bufnr,
      callback = function()
        M.dismiss(bufnr)
      end,
    })
    api.nvim_create_autocmd('CursorMovedI', {
      group = group,
      buffer = bufnr,
      callback = function()
        local s = buffers[bufnr]
        if s and s.cursor and not vim.deep_equal(s.cursor, api.nvim_win_get_cursor(0)) then
          M.dismiss(bufnr)
        end
      end,
    })
  end
  map_keys(bufnr)
  if M.config.on_attach then
    M.config.on_attach(client, bufnr)
  end
end

local function server_command()
  local cmd = M.config.cmd
  if vim.fn.executable(cmd[1]) == 1 then
    return cmd
  end
  notify_once('missing-server', ('`%s` was not found. Install the server (`pip install ghostpilot`) or set '
    .. "cmd = { '/path/to/venv/bin/ghostpilot', 'serve' } in require('ghostpilot').setup()."):format(cmd[1]),
    vim.log.levels.ERROR)
  return nil
end

--- Start (or reuse) the server for `bufnr`'s project and attach the buffer to it.
--- Returns the client id, or nil when the server cannot be started.
function M.attach(bufnr)
  bufnr = resolve_buf(bufnr)
  local cmd = server_command()
  if not cmd then
    return nil
  end
  local config = {
    name = NAME,
    cmd = cmd,
    root_dir = root_dir(bufnr),
    init_options = M.config.settings,
    settings = { ghostpilot = M.config.settings },
    capabilities = capabilities(),
    handlers = { ['ghostpilot/status'] = on_status },
    on_attach = on_attach,
    on_exit = function(code)
      M.status = { state = code == 0 and 'stopped' or 'error', message = 'server exited with code ' .. tostring(code) }
    end,
  }
  if vim.lsp.start then
    return vim.lsp.start(config, { bufnr = bufnr })
  end
  local id = clients_by_root[config.root_dir]
  if not (id and vim.lsp.get_client_by_id(id)) then
    id = vim.lsp.start_client(config)
    clients_by_root[config.root_dir] = id
  end
  if id then
    vim.lsp.buf_attach_client(bufnr, id)
  end
  return id
end

--- Stop the server(s) and attach every matching buffer again.
function M.restart()
  for _, client in pairs(all_clients()) do
    if client.name == NAME then
      vim.lsp.stop_client(client.id)
    end
  end
  clients_by_root = {}
  vim.defer_fn(function()
    for _, bufnr in ipairs(api.nvim_list_bufs()) do
      if api.nvim_buf_is_loaded(bufnr) and vim.tbl_contains(M.config.filetypes, vim.bo[bufnr].filetype) then
        M.attach(bufnr)
      end
    end
  end, 500)
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  M.enabled = M.config.settings.enable ~= false
  vim.cmd('highlight default link GhostpilotSuggestion Comment')
  local group = api.nvim_create_augroup('ghostpilot', { clear = true })
  api.nvim_create_autocmd('FileType', {
    group = group,
    pattern = M.config.filetypes,
    callback = function(args)
      M.attach(args.buf)
    end,
  })
  local commands = {
    GhostpilotSuggest = {
      function()
        M.suggest({
          on_result = function(item, err)
            if err or not item then
              vim.notify('ghostpilot: ' .. (err or 'no suggestion here'), vim.log.levels.INFO)
            end
          end,
        })
      end,
      'Ask for an AI suggestion at the cursor',
    },
    GhostpilotAccept = { function() M.accept() end, 'Insert the shown AI suggestion' },
    GhostpilotDismiss = { function() M.dismiss() end, 'Drop the shown AI suggestion' },
    GhostpilotDocstring = { function() M.generate_docstring() end, 'Generate the docstring of the function at the cursor' },
    GhostpilotToggle = { function() M.toggle() end, 'Turn inline suggestions on or off' },
    GhostpilotReport = { function() M.show_command('ghostpilot.relianceReport', {}) end, 'Show the over-reliance report' },
    GhostpilotStatus = { function() vim.notify(M.statusline()) end, 'Show the model state' },
    GhostpilotRestart = { function() M.restart() end, 'Restart the Ghostpilot server' },
  }
  for name, spec in pairs(commands) do
    api.nvim_create_user_command(name, spec[1], { desc = spec[2] })
  end
end

return M
