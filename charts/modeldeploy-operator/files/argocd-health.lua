-- Argo CD health of a ModelDeployment (modeldeploy.dev/v1alpha1), from the status the operator writes.
-- Install: argocd-cm key resource.customizations.health.modeldeploy.dev_ModelDeployment (see the README).
--   Healthy      phase Healthy: the revision the spec asks for serves at full size
--   Suspended    phase Paused: a canary waits for a promote request or was paused by a user
--   Degraded     phases Degraded (rolling back), RolledBack and Failed
--   Progressing  anything else, and whenever the operator has not yet seen the latest spec
local hs = {status = "Progressing", message = "Waiting for the operator to report a status"}
if obj.status == nil then
  return hs
end

local ready = nil
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    end
  end
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local phase = obj.status.phase
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  hs.message = ready.message
elseif phase ~= nil then
  hs.message = phase
end

if phase == "Healthy" then
  hs.status = "Healthy"
elseif phase == "Paused" then
  hs.status = "Suspended"
elseif phase == "Degraded" or phase == "RolledBack" or phase == "Failed" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
return hs
