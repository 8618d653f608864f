-- Headless Neovim scenario for tests/editors/test_neovim.py:
--   nvim --headless -u tests/editors/neovim/test_init.lua
-- Loads editors/neovim (the shipped Lua setup), attaches it to the real `ghostpilot serve`,
-- asks for a completion at the cursor, accepts the AI item, runs the docstring code
-- action, and writes every step's outcome and the buffer texts as JSON to
-- $GHOSTPILOT_RESULT. Exit code 0 only when every step passed.
--
-- Environment: GHOSTPILOT_PLUGIN (editors/neovim), GHOSTPILOT_SERVER (the ghostpilot
-- executable), GHOSTPILOT_FILE (the Python file), GHOSTPILOT_COMPLETE_AT and
-- GHOSTPILOT_DOCSTRING_AT ("line:col", 1-based line, 0-based byte column),
-- GHOSTPILOT_STEP_TIMEOUT_MS.

local api = vim.api
local env = vim.env
local uv = vim.uv or vim.loop
local started = uv.hrtime()
local report = { nvim = tostring(vim.version().major .. '.' .. vim.version().minor .. '.' .. vim.version().patch), steps = {} }

local function seconds()
  return (uv.hrtime() - started) / 1e9
end

local function log(message)
  io.stderr:write(('[nvim %6.1fs] %s\n'):format(seconds(), message))
end

local function finish(code)
  report.total_s = seconds()
  local file = assert(io.open(env.GHOSTPILOT_RESULT, 'w'))
  file:write(vim.fn.json_encode(report))
  file:close()
  log('exit ' .. code)
  vim.cmd((code == 0 and 'qall!' or ('cquit! ' .. code)))
end

local function buffer_text(bufnr)
  return table.concat(api.nvim_buf_get_lines(bufnr, 0, -1, false), '\n') .. '\n'
end

local function parse_at(spec)
  local line, col = spec:match('^(%d+):(%d+)$')
  return { tonumber(line), tonumber(col) }
end

local step_timeout = tonumber(env.GHOSTPILOT_STEP_TIMEOUT_MS or '240000')

--- Run one named step; `fn` returns a table of facts or raises with the reason it failed.
local function step(name, fn)
  local t0 = seconds()
  log('step ' .. name)
  local ok, result = xpcall(fn, debug.traceback)
  local entry = { name = name, ok = ok, seconds = seconds() - t0 }
  if ok then
    entry.facts = result
  else
    entry.error = tostring(result)
    log('FAILED ' .. name .. ': ' .. entry.error)
  end
  table.insert(report.steps, entry)
  return ok, result
end

local function wait_for(what, predicate)
  if not vim.wait(step_timeout, predicate, 50) then
    error(('timed out after %d ms waiting for %s'):format(step_timeout, what))
  end
end

local function main()
  vim.opt.runtimepath:prepend(env.GHOSTPILOT_PLUGIN)
  vim.cmd('filetype on')
  vim.opt.swapfile = false
  -- Lets the normal-mode cursor sit after the last character, where insert mode types.
  vim.opt.virtualedit = 'onemore'
  vim.lsp.set_log_level('warn')
  local gp = require('ghostpilot')
  gp.setup({
    cmd = { env.GHOSTPILOT_SERVER, 'serve' },
    mode = 'fallback',
    auto_trigger = false,
    settings = { testedCandidates = 4, testedMaxTokens = 64 },
  })
  report.mode = vim.lsp.inline_completion and 'inline-capable' or 'fallback'

  local bufnr
  local ok = step('attach', function()
    vim.cmd('edit ' .. vim.fn.fnameescape(env.GHOSTPILOT_FILE))
    bufnr = api.nvim_get_current_buf()
    wait_for('the ghostpilot client to initialise', function()
      local client = gp.get_client(bufnr)
      return client ~= nil and client.server_capabilities ~= nil and next(client.server_capabilities) ~= nil
    end)
    local caps = gp.get_client(bufnr).server_capabilities
    return {
      filetype = vim.bo[bufnr].filetype,
      completionProvider = caps.completionProvider ~= nil,
      codeActionProvider = caps.codeActionProvider ~= nil,
      commands = (caps.executeCommandProvider or {}).commands or {},
    }
  end)
  if not ok then
    return finish(1)
  end
  report.original = buffer_text(bufnr)

  -- The server loads the model in the background after `initialized` and says so
  -- through ghostpilot/status; a user types once it is ready.
  ok = step('model', function()
    wait_for('the model to load (ghostpilot/status "ready")', function()
      return gp.status.state == 'ready'
    end)
    return { status = gp.status }
  end)
  if not ok then
    return finish(1)
  end

  local item
  ok = step('complete', function()
    local at = parse_at(env.GHOSTPILOT_COMPLETE_AT)
    api.nvim_win_set_cursor(0, at)
    local answered, err
    -- A busy machine can make the server give up on one request: ask up to three times.
    local deadline = seconds() + step_timeout / 1000
    local attempts = 0
    repeat
      answered, err, item = false, nil, nil
      attempts = attempts + 1
      gp.suggest({
        on_result = function(result, message)
          item, err, answered = result, message, true
        end,
      })
      wait_for('the completion answer', function()
        return answered
      end)
      if not item and seconds() < deadline then
        vim.wait(1000)
      end
    until item or attempts >= 3 or seconds() >= deadline
    if not item then
      error('no AI completion item after ' .. attempts .. ' requests (last error: ' .. tostring(err) .. ')')
    end
    return {
      attempts = attempts,
      label = item.label,
      detail = item.detail,
      kind = item.kind,
      newText = item.textEdit.newText,
      range = item.textEdit.range or item.textEdit.insert,
      command = item.command,
      preview_shown = gp.has_suggestion(bufnr),
      preview_extmarks = #api.nvim_buf_get_extmarks(bufnr, api.nvim_create_namespace('ghostpilot'), 0, -1, {}),
    }
  end)
  if not ok then
    return finish(1)
  end

  ok = step('accept', function()
    -- Press the accept key the way insert mode would: call its expression mapping.
    local key = gp.config.keymaps.accept
    local lhs = api.nvim_replace_termcodes(key, true, false, true)
    local mapping
    for _, candidate in ipairs(api.nvim_buf_get_keymap(bufnr, 'i')) do
      if api.nvim_replace_termcodes(candidate.lhs, true, false, true) == lhs then
        mapping = candidate
      end
    end
    if not (mapping and type(mapping.callback) == 'function' and mapping.expr == 1) then
      error('no Lua expression mapping for ' .. key .. ' in insert mode: ' .. vim.inspect(mapping))
    end
    gp.last_accepted = nil
    local typed = mapping.callback()
    if typed ~= '' then
      error(key .. ' with a suggestion shown should insert nothing itself, got ' .. vim.inspect(typed))
    end
    wait_for('the ghostpilot.accept command to be answered', function()
      return gp.last_accepted ~= nil
    end)
    local accepted_answer = {
      err = gp.last_accepted.error and (gp.last_accepted.error.message or vim.inspect(gp.last_accepted.error)) or vim.NIL,
      result = gp.last_accepted.result,
    }
    if accepted_answer.err ~= vim.NIL then
      error('ghostpilot.accept failed: ' .. accepted_answer.err)
    end
    local plain_key = mapping.callback()
    if plain_key ~= api.nvim_replace_termcodes(key, true, false, true) then
      error(key .. ' without a suggestion should type itself, got ' .. vim.inspect(plain_key))
    end
    -- The expected text, computed here from the item (ASCII file: characters = bytes).
    local range = item.textEdit.range or item.textEdit.insert
    local lines = vim.split(report.original, '\n', { plain = true })
    local offset = 0
    for i = 1, range.start.line do
      offset = offset + #lines[i] + 1
    end
    local start_offset = offset + range.start.character
    offset = 0
    for i = 1, range['end'].line do
      offset = offset + #lines[i] + 1
    end
    local end_offset = offset + range['end'].character
    local expected = report.original:sub(1, start_offset) .. item.textEdit.newText .. report.original:sub(end_offset + 1)
    local actual = buffer_text(bufnr)
    if actual ~= expected then
      error('buffer after accept differs from the text edit applied by hand:\n--- expected\n' .. expected .. '\n--- actual\n' .. actual)
    end
    return {
      after_accept = actual,
      cursor = api.nvim_win_get_cursor(0),
      preview_cleared = not gp.has_suggestion(bufnr),
      accept_result = accepted_answer.result,
    }
  end)
  if not ok then
    return finish(1)
  end
  report.after_accept = buffer_text(bufnr)

  ok = step('docstring', function()
    api.nvim_win_set_cursor(0, parse_at(env.GHOSTPILOT_DOCSTRING_AT))
    local before = buffer_text(bufnr)
    local finished, failure, info
    gp.generate_docstring({
      on_done = function(err, details)
        finished, failure, info = true, err, details or {}
      end,
    })
    wait_for('the docstring action to finish', function()
      return finished
    end)
    if failure then
      error('docstring action failed: ' .. (failure.message or vim.inspect(failure)) .. ' ' .. vim.inspect(info))
    end
    -- A server may apply the edit through workspace/applyEdit before or after answering.
    wait_for('the docstring edit to reach the buffer', function()
      return buffer_text(bufnr) ~= before
    end)
    return { via = info.via, title = info.title, after_docstring = buffer_text(bufnr) }
  end)
  local docstring_ok = ok

  -- Tested suggestions: a function with examples appended at the end; the server's
  -- command draws and tests candidates, then the code actions there insert one.
  ok = step('tested', function()
    local first = api.nvim_buf_line_count(bufnr)
    api.nvim_buf_set_lines(bufnr, first, first, false, {
      '', '', 'def halve(n):', '    """Half of n.', '', '    >>> halve(4)', '    2.0', '    >>> halve(1)', '    0.5', '    """', '',
    })
    local body_line = first + 10 -- 0-based: the blank line after the docstring
    local uri = vim.uri_from_bufnr(bufnr)
    local answers = vim.lsp.buf_request_sync(bufnr, 'workspace/executeCommand', {
      command = 'ghostpilot.suggestTested',
      arguments = { uri, { line = body_line, character = 0 } },
    }, step_timeout)
    local answer
    for _, response in pairs(answers or {}) do
      answer = answer or response.result
      if response.err then
        error('ghostpilot.suggestTested failed: ' .. vim.inspect(response.err))
      end
    end
    if not answer then
      error('no answer to ghostpilot.suggestTested')
    end
    local position = { line = body_line, character = 0 }
    local actions = vim.lsp.buf_request_sync(bufnr, 'textDocument/codeAction', {
      textDocument = { uri = uri },
      range = { start = position, ['end'] = position },
      context = { diagnostics = {} },
    }, 20000)
    local titles, insert = {}, nil
    for _, response in pairs(actions or {}) do
      for _, action in ipairs(response.result or {}) do
        table.insert(titles, action.title)
        if not insert and action.title:match('^Insert candidate 1: ') then
          insert = action
        end
      end
    end
    if not insert then
      error('no "Insert candidate 1" code action: ' .. vim.inspect(titles))
    end
    vim.lsp.util.apply_workspace_edit(insert.edit, 'utf-16')
    return { summary = answer.summary, passing = answer.passing, candidates = answer.candidates,
             titles = titles, after_tested = buffer_text(bufnr) }
  end)
  local tested_ok = ok
  report.final = buffer_text(bufnr)
  -- Stop the server cleanly so its exit is part of the test, whatever came before.
  ok = step('shutdown', function()
    local client = gp.get_client(bufnr)
    vim.lsp.stop_client(client.id)
    wait_for('the server to stop', function()
      return vim.lsp.get_client_by_id(client.id) == nil
    end)
    return {}
  end)
  finish((ok and docstring_ok and tested_ok) and 0 or 1)
end

-- Never hang CI: a watchdog past every step's own timeout.
vim.defer_fn(function()
  log('watchdog fired')
  report.watchdog = true
  finish(3)
end, step_timeout * 5)

vim.schedule(function()
  local ok, err = xpcall(main, debug.traceback)
  if not ok then
    report.error = tostring(err)
    log('ERROR ' .. report.error)
    finish(2)
  end
end)
