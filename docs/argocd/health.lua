-- Argo CD health check of deepseek-operator.io/DeepSeekDeployment (docs/gitops.md).
-- Argo CD runs it with the object as `obj` (gopher-lua, Lua 5.1) and reads hs.status:
--   Progressing  no status yet, or status.observedGeneration < metadata.generation (the
--                operator has not seen this spec yet), or on its way (Ready=False,
--                Stalled not True: storage, download, scheduling, rollout, scaling)
--   Degraded     Stalled=True: the spec cannot work as it is (its reason and message say
--                why; phase Degraded when the last good version still serves)
--   Healthy      Ready=True for the current generation
-- The same rules as kstatus (Failed when Stalled, Current when Ready) plus the guard for
-- an object the operator has not written a status for yet.
local hs = {}

local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  local text = c.reason or fallback
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local status = obj.status
local generation = obj.metadata.generation
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report the status of this DeepSeekDeployment"
  return hs
end
if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation ..
    " (status is of generation " .. status.observedGeneration .. ")"
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled, "Stalled")
  return hs
end

local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the deployment to become Ready")
if status.phase ~= nil then
  hs.message = status.phase .. ": " .. hs.message
end
return hs
